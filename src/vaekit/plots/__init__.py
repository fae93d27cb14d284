"""Figures. Image grids are written with Pillow; matplotlib is imported only inside plot functions."""

from vaekit.plots.grid import image_grid, save_image_grid

__all__ = ["image_grid", "save_image_grid"]
