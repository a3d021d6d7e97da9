"""Audio front end, genre models, training and attributions (bottom layer)."""
