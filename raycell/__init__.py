"""raycell: single-cell training experiments on Ray."""
