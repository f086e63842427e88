"""Name -> model builder."""

_BUILDERS = {}


def register_model(name):
    """Decorator: makes `get_model(name, **kwargs)` call the decorated builder."""

    def decorate(builder):
        _BUILDERS[name] = builder
        return builder

    return decorate


def available_models():
    """The names `get_model` accepts, sorted."""
    return sorted(_BUILDERS)


def get_model(name, **kwargs):
    """Builds the registered model `name`; raises ValueError naming the known ones."""
    if name not in _BUILDERS:
        raise ValueError(
            f"Unknown model {name!r}. Known models: {', '.join(available_models())}."
        )
    shape = kwargs.get("input_shape")
    if shape is not None and (not isinstance(shape, (tuple, list)) or not all(
            d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in shape)):
        raise ValueError(f"Argument `input_shape` must be a tuple of sizes > 0 (or None). Received: input_shape={shape!r}.")
    return _BUILDERS[name](**kwargs)
