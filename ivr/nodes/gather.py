"""gather: prompt, then listen for speech and/or DTMF; branch on keywords or digits.

No input and no match reprompt (their own prompt, or the gather's again) up to ``max_attempts``,
then the failure edge. A global keyword of the flow wins wherever it is heard.
"""

from __future__ import annotations


async def run(node_id, node, run) -> str | None:
    if not run.gathers or run.gathers[-1] != node_id:
        run.gathers.append(node_id)
    reprompt = None
    for attempt in range(node.max_attempts):
        if reprompt is not None:
            if reprompt.say:
                await run.channel.say(run.render(reprompt.say), barge_in=node.barge_in)
            elif reprompt.play:
                await run.channel.play(reprompt.play, barge_in=node.barge_in)
        found = await run.channel.gather(node, run.flow, prompt=True)
        if found.kind == "no_input":
            run.hits.append({"node": node_id, "source": "none", "text": "", "keyword": None, "score": 0.0,
                             "decision_ms": None})
            reprompt = node.no_input
            if reprompt is not None and reprompt.next:
                return reprompt.next
            continue
        run.record_hit(node_id, found)
        if found.goto is not None:
            return found.goto
        if found.branch is not None:
            run.variables[f"{node_id}.input"] = found.text
            run.variables["last_input"] = found.text
            return node.branches[found.branch].goto
        reprompt = node.no_match
        if reprompt is not None and reprompt.next:
            return reprompt.next
    return node.failure
