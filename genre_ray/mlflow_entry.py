"""MLflow's models-from-code entry for the logged model (see :mod:`genre_ray.mlflow_model`): loading the model runs
this file, with the genre_ray package the model carries first on ``sys.path``; nothing is unpickled."""

from mlflow.models import set_model

from genre_ray.mlflow_model import GenreLabeller

set_model(GenreLabeller())
