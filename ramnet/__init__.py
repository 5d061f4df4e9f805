"""ramnet"""
