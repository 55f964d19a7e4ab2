"""RecArena's RecBole adapter: every RecBole 1.2.1 model as ``recbole/<Model>`` (see ``adapter``)."""
