"""All SQL of the wear models, by concern: ``readings`` (what training and scoring read),
``predictions`` (scoring's bookkeeping and the predictions it writes), ``versions`` (the
registry), ``monitoring`` (live assets, drift checks, retraining decisions). Callers may name
the concern's module or use the names re-exported here."""

from models.repository.monitoring import *  # noqa: F403
from models.repository.predictions import *  # noqa: F403
from models.repository.readings import *  # noqa: F403
from models.repository.versions import *  # noqa: F403
