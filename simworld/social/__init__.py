"""The social layer: a friend graph, turn-by-turn chats, posts and reposts, the feed, word of
mouth and diffusion metrics. It enters a round as stages (simworld/social/stages.py) and its
actions are `simworld.agents.actions` types; the world has no social `if` anywhere.

    social:                      # a scenario section (SocialConfig)
      graph: {source: taste_sbm, degree: 6}
      mix: {watch: 0.6, talk: 0.25, post: 0.15}
"""

from simworld.social.config import SocialConfig

__all__ = ["SocialConfig"]
