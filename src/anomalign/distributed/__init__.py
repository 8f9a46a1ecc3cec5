"""Scale-out prediction: the local engine's per-image results, on a Ray cluster.

* :func:`predict_dataset` runs a job on Ray Data (a local Ray instance when no cluster
  address is given) and writes Parquet: one row per image (:data:`SCHEMA`).
* :func:`read_results` reads an output folder back (the latest row per input).
* Each score comes with the decision and its calibrated confidence
  (:meth:`anomalign.calibration.Calibration.confidence`, as the service reports it).

Ray and pyarrow come with the ``ray`` extra (``pip install "anomalign[ray]"``); Ray is
imported only when a job runs.
"""

from anomalign.distributed.engine import DatasetRun, predict_dataset
from anomalign.distributed.results import read_results
from anomalign.distributed.schema import COLUMNS, SCHEMA, decode_map

__all__ = [
    "COLUMNS",
    "SCHEMA",
    "DatasetRun",
    "decode_map",
    "predict_dataset",
    "read_results",
]
