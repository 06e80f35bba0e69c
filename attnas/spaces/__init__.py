"""Search spaces: each declares its choice points once; :mod:`attnas.spaces.registry` maps names to them."""
