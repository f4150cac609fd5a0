"""Decoders (up-convolutional networks) and the streaming trainer that fits them to stored features."""
