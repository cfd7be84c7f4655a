"""Automatic call distribution: sans-IO queues, agents and strategies (issue 5).

``Acd`` (engine.py) is fed events with an injected ``now`` and returns actions; the asyncio/SIP layer
executes them. Strategies (strategies.py) are pure functions over one ``QueueState`` so a simulator can
reuse them unchanged.
"""

from .engine import (Acd, Action, AgentPaused, Announce, CancelOffer, Connect, LeftEmpty, Offer,
                     Overflow, Timeout)
from .model import (Agent, AgentConfig, AgentState, Caller, CallerOutcome, OfferOutcome, QueueConfig,
                    QueueLogEntry, QueueState, QueueStats)
from .strategies import STRATEGIES, canonical_name, get_strategy

__all__ = [
    "Acd", "Action", "Agent", "AgentConfig", "AgentPaused", "AgentState", "Announce", "CancelOffer",
    "Caller", "CallerOutcome", "Connect", "LeftEmpty", "Offer", "OfferOutcome", "Overflow", "QueueConfig",
    "QueueLogEntry", "QueueState", "QueueStats", "STRATEGIES", "Timeout", "canonical_name", "get_strategy",
]
