"""Features: the 1812 catalog features of a segment, computed with Essentia.

- :mod:`~stemstore.features.extractor`: :class:`~stemstore.features.extractor.FeatureExtractor`,
  one segment's catalog with the study's Essentia configuration (docs/method.md, section 3);
- :mod:`~stemstore.features.extraction`: the extraction stage, which runs the extractor over the
  store's pending segments in worker processes or on a Dask cluster and writes the values.
"""

#: The extraction's configuration (:mod:`~stemstore.features.extractor`). Bump it whenever a
#: change alters any stored value: values of an older version are outdated, and ``stemstore
#: extract`` recomputes them. Kept here, apart from the extractor, so that counting outdated
#: values does not import Essentia.
#: "1": a fixed 440 Hz HPCP reference, MFCC mel bands, numpy pooling (before the study's
#: configuration was matched); "2": the study's configuration, pooled by PoolAggregator.
EXTRACTOR_VERSION = "2"
