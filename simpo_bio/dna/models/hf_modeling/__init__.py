"""Self-contained Hugging Face modelling code of the simpo-bio DNA generators.

``configuration_simpo_dna.py`` and ``modeling_simpo_dna.py`` import only ``torch`` and ``transformers``:
``simpo-bio export-hf`` (:mod:`simpo_bio.dna.models.hf`) copies them next to ``config.json`` so that
``AutoModelForMaskedLM.from_pretrained(DIR, trust_remote_code=True)`` works where simpo-bio is not installed. The
same files are the local classes :mod:`simpo_bio.dna.models.hf` registers with the Auto classes.
"""
