"""The quantum kernel's directory: on a sandbox venv's import path, it shows only
``lwfm_qkernel`` (nothing that could shadow a standard module)."""
