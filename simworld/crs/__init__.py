"""Conversational recommendation (CRS): controllable simulated seekers talk to pluggable CRSs,
and the dialogues become data sets.

    from simworld.crs.generation import Generation
    from simworld.crs.config import load_crs_scenario

    gen = Generation.start(load_crs_scenario("scenarios/crs_movies.yaml"))
    gen.run()          # dialogues in committed batches: a killed generation resumes
    gen.close()

The parts, one module each: `config` (the CRS scenario and the seekers' knobs), `need`
(hidden information needs), `seeker` (decisions by rule, words by template or LLM),
`leak` (the guard that keeps target titles out of the seeker's mouth), `text` (film
mentions, tokens, surface style), `protocol` (the CRS protocol and its request/reply),
`retrieval`, `llm_crs`, `http_crs` (the built-in CRSs), `dialogue` (the loop), `records`
(what a dialogue leaves behind), `metrics`, `redial` (ReDial import and export), `export`
(Parquet, chat JSON lines, data-set card), `generation` (the run folder), `dataset` (a run
folder exported as a data set) and `testing` (the contract every CRS passes).
"""

from simworld.streams import register_stream

# The CRS's random streams (simworld.streams): every draw of a generation comes from one.
CRS_STREAMS = {
    "crs_need": "a CRS seeker's hidden need: targets and constraints (keys: dialogue index)",
    "crs_knobs": "a CRS seeker's knob values drawn from their distributions (keys: dialogue index, knob)",
    "crs_seeker": "a CRS seeker's decisions, words and surface style (keys: dialogue index, part)",
    "crs_background": "the viewing history of a synthetic CRS seeker (keys: agent id)",
}
for _name, _purpose in CRS_STREAMS.items():
    register_stream(_name, _purpose)
