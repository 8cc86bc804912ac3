"""genre-ray: train music-genre classifiers and label whole music libraries at scale on Ray.

Pure building blocks live at the top level (``audio``, ``features``, ``catalog``, ``splits``, ``models``,
``training``, ``evaluate``, ``inference``, ``bundle``, ``tracking``, ``config``, ``synth``); the Ray drivers
live in :mod:`genre_ray.pipelines`; the command line is :mod:`genre_ray.cli`.
"""

__version__ = "0.1.0"
