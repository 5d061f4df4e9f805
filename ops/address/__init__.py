"""Product-softmax addressing with exact beam Top-K."""
