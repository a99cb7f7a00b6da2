"""The ``lrsched`` command and its Hydra training app (the layer above the library)."""
