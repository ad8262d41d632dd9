"""Print the commands of the README's Quick start section (its single fenced block)."""
import re
import sys

text = open(sys.argv[1], encoding="utf-8").read()
section = re.search(r"^#+ *Quick start *$(.*?)(?=^#+ )", text, re.MULTILINE | re.DOTALL | re.IGNORECASE)
if section is None:
    sys.exit("README has no 'Quick start' section")
blocks = re.findall(r"^```[a-z]*\n(.*?)^```", section.group(1), re.MULTILINE | re.DOTALL)
if len(blocks) != 1:
    sys.exit(f"the Quick start section must hold exactly one fenced block, found {len(blocks)}")
commands = [line for line in blocks[0].splitlines() if line.strip()]
if len(commands) != 2:
    sys.exit(f"the Quick start block must hold exactly two commands, found {len(commands)}")
print("\n".join(commands))
