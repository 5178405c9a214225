"""The two towers and the model that holds them."""
