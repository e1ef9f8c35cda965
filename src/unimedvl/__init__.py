"""UniMedVL for the Hugging Face ecosystem: one model that understands and generates medical images.

```python
from unimedvl import UniMedVLForConditionalGeneration, UniMedVLProcessor, UniMedVLPipeline
```
"""

from importlib import import_module

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from .modeling.configuration_unimedvl import UniMedVLConfig, UniMedVLTextConfig, UniMedVLVisionConfig
from .modeling.image_processing_unimedvl import UniMedVLImageProcessor
from .modeling.medical_io import MedicalImageError, load_image
from .modeling.modeling_unimedvl import (
    UniMedVLForConditionalGeneration,
    UniMedVLModel,
    UniMedVLPreTrainedModel,
    UniMedVLTextModel,
    UniMedVLVisionModel,
)
from .modeling.processing_unimedvl import UniMedVLProcessor


__version__ = "0.1.0"

AutoConfig.register(UniMedVLConfig.model_type, UniMedVLConfig, exist_ok=True)
AutoConfig.register(UniMedVLTextConfig.model_type, UniMedVLTextConfig, exist_ok=True)
AutoConfig.register(UniMedVLVisionConfig.model_type, UniMedVLVisionConfig, exist_ok=True)
AutoModel.register(UniMedVLConfig, UniMedVLModel, exist_ok=True)
AutoModelForImageTextToText.register(UniMedVLConfig, UniMedVLForConditionalGeneration, exist_ok=True)
AutoImageProcessor.register(UniMedVLConfig, slow_image_processor_class=UniMedVLImageProcessor, exist_ok=True)
AutoProcessor.register(UniMedVLConfig, UniMedVLProcessor, exist_ok=True)

# The diffusers side is imported on first use: `import unimedvl` stays light for understanding-only users.
_LAZY = {
    "StepCacheConfig": "unimedvl.pipelines.pipeline_unimedvl",
    "UniMedVLPipeline": "unimedvl.pipelines.pipeline_unimedvl",
    "UniMedVLPipelineOutput": "unimedvl.pipelines.pipeline_unimedvl",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unimedvl' has no attribute {name!r}")


__all__ = [
    "MedicalImageError",
    "StepCacheConfig",
    "UniMedVLConfig",
    "UniMedVLForConditionalGeneration",
    "UniMedVLImageProcessor",
    "UniMedVLModel",
    "UniMedVLPipeline",
    "UniMedVLPipelineOutput",
    "UniMedVLPreTrainedModel",
    "UniMedVLProcessor",
    "UniMedVLTextConfig",
    "UniMedVLTextModel",
    "UniMedVLVisionConfig",
    "UniMedVLVisionModel",
    "load_image",
]
