"""The curation web app behind ``stemstore serve`` (:mod:`stemstore.web.app`)."""
