"""softswitch: a SIP softswitch and IVR engine.

Layers (see docs/architecture.md): ``sip`` (sans-IO protocol core + asyncio transport),
``sdp``, ``media`` (RTP relay), ``calls`` (B2BUA legs), ``routing`` (dial plan, trunks),
``registrar``, ``store`` (CDRs, bindings), ``config``, ``cli``; ``app.Switch`` owns them all.
"""

__version__ = "0.1.0"
