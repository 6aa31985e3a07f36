"""Built-in generated street scenes with exact Cityscapes ground truth (the demo data set).

``render_scene`` draws one scene in memory; ``generate_dataset`` writes a whole data set in the
official Cityscapes layout (and optionally the Kaggle pairs format) for the other commands to use.
"""

from cityseg.scenes.render import Scene, render_scene
from cityseg.scenes.writer import DEFAULT_CITIES, generate_dataset

__all__ = ["DEFAULT_CITIES", "Scene", "generate_dataset", "render_scene"]
