"""PDMA sparse memory: write, decay and normalised read."""
