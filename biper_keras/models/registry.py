"""Name -> model builder."""

_BUILDERS = {}


def register_model(name):
    """Decorator: makes `get_model(name, **kwargs)` call the decorated builder."""

    def decorate(builder):
        _BUILDERS[name] = builder
        return builder

    return decorate


def available_models():
    return sorted(_BUILDERS)


def get_model(name, **kwargs):
    """Builds the registered model `name`; raises ValueError naming the known ones."""
    if name not in _BUILDERS:
        raise ValueError(
            f"Unknown model {name!r}. Known models: {', '.join(available_models())}."
        )
    return _BUILDERS[name](**kwargs)
