"""One module per on-disk weight layout, each a pair of functions to and from `QuantWeight`."""
