"""UniMedVL for the Hugging Face ecosystem."""
