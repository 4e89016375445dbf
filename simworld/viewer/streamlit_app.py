"""The viewer as a script inside the package, for `simworld ui` when app.py is not at hand
(an installed, non-editable simworld): `streamlit run <this file>`."""

from simworld.viewer.page import main

main()
