def register(cls):
    return cls
