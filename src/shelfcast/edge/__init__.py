"""The edge side: the LiteRT runtime, model publication and the store client."""
