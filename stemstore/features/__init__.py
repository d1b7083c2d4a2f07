"""Features: the 1812 catalog features of a segment, computed with Essentia.

- :mod:`~stemstore.features.extractor`: :class:`~stemstore.features.extractor.FeatureExtractor`,
  one segment's catalog with the study's Essentia configuration (docs/method.md, section 3);
- :mod:`~stemstore.features.extraction`: the extraction stage, which runs the extractor over the
  store's pending segments in worker processes or on a Dask cluster and writes the values.
"""
