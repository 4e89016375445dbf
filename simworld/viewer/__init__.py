"""The Streamlit live viewer: `streamlit run app.py` (see simworld.viewer.page.main).

session.py  run control (a Simulation stepped by one background thread per browser session)
data.py     frames read from a run folder with the recorder's readers (no Streamlit)
registry.py page discovery: one module per view in simworld.viewer.views
page.py     the page: sidebar controls, status bar, the selected view
"""
