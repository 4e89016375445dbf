"""The simworld live viewer: `streamlit run app.py` (or `simworld ui`).

Thin on purpose: the page lives in simworld/viewer/ (one module per view in
simworld/viewer/views/). Bind to 127.0.0.1 (see .streamlit/config.toml).
"""

from simworld.viewer.page import main

main()
