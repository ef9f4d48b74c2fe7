"""The synthetic world's object classes: class id = index, 0 the background.

The one class list of the package: the world draws these, the shipped detector was trained on
them, and the detector's `class_names` parameter defaults to them. Kept apart from world.py so
that the parameter registry (read by the launch file) needs neither numpy nor the renderer.
"""

CLASS_NAMES: tuple[str, ...] = ('__background__', 'car', 'van', 'truck', 'pedestrian', 'cyclist')
CLASS_IDS = {name: i for i, name in enumerate(CLASS_NAMES)}
