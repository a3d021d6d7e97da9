"""Errors the catalog raises for the layers above to turn into messages or 404s."""


class TrackNotFound(LookupError):
    """No track matches the id or path given."""
