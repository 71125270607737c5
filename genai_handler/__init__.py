"""OCI Functions handler that forwards JSON prompts to OCI Generative AI."""
