"""The Kubernetes side: pure manifest builders, the API wrapper, and the kopf operator."""
from typing import Final

GROUP: Final = "openautoglm.io"
VERSION: Final = "v1alpha1"
PLURAL: Final = "tuningjobs"
KIND: Final = "TuningJob"
API_VERSION: Final = f"{GROUP}/{VERSION}"
