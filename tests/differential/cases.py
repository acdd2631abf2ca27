"""The differential cases: shell-only workflows run by the reference engine and by Ferry.

Each case is a workflow, the commands run on it (a run, then maybe `resume --trigger-all`), the
features it covers, and the deliberate differences it shows (`differences.py`). A case with no
difference must agree exactly: exit status, every task's final status, each task's step output
and the final state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.differential import differences as d
from tests.differential.differences import Difference
from tests.differential.harness import Invocation

RUN = (Invocation(),)
RUN_THEN_TRIGGER = (Invocation(), Invocation(trigger_all=True))


@dataclass(frozen=True)
class Case:
    """One workflow through both engines."""

    name: str
    workflow: str
    covers: tuple[str, ...]
    steps: tuple[Invocation, ...] = RUN
    differences: tuple[Difference, ...] = ()
    hangs: bool = False
    """The reference never exits on the first command (stopped after `hang_after` s)."""
    hang_after: float = 5.0
    files: dict[str, str] = field(default_factory=dict)
    """Extra files next to the workflow (the working directory)."""


PAUSES = Difference("manual-pauses", d.paused)
FAILED_DEPENDENTS = Difference("failed-dependents", d.blocked_not_pending)
MATRIX_ENV = Difference("matrix-env-json", d.unquote_matrix_env)

CASES: list[Case] = [
    Case("dag-chain", """
version: "1"
nodes:
  - {id: a, name: A, steps: [{name: s, run: echo a}]}
  - {id: b, name: B, depends_on: [a], steps: [{name: s, run: echo b}]}
  - {id: c, name: C, depends_on: [b], steps: [{name: s, run: echo c}]}
""", ("dag",)),
    Case("dag-diamond", """
version: "1"
nodes:
  - id: top
    name: Top
    steps: [{name: s, run: 'echo "n=1" >> "$STATE_OUTPUTS"'}]
  - id: left
    name: Left
    depends_on: [top]
    steps: [{name: s, run: 'echo "l=${{ state.n }}" >> "$STATE_OUTPUTS"'}]
  - id: right
    name: Right
    depends_on: [top]
    steps: [{name: s, run: 'echo "r=2" >> "$STATE_OUTPUTS"'}]
  - id: bottom
    name: Bottom
    depends_on: [left, right]
    steps: [{name: s, run: 'echo "${{ state.l }}+${{ state.r }}"'}]
""", ("dag", "state-namespace")),
    Case("independent-roots", """
version: "1"
nodes:
  - {id: a, name: A, steps: [{name: one, run: echo a1}, {name: two, run: echo a2}]}
  - {id: b, name: B, steps: [{name: one, run: echo b1}]}
""", ("dag",)),
    Case("failing-leaf", """
version: "1"
nodes:
  - {id: ok, name: Ok, steps: [{name: s, run: echo fine}]}
  - id: bad
    name: Bad
    steps:
      - {name: s1, run: echo before}
      - {name: s2, run: 'echo failing; exit 3'}
      - {name: s3, run: echo never}
""", ("failure",)),
    Case("failure-blocks-dependents", """
version: "1"
nodes:
  - {id: bad, name: Bad, steps: [{name: s, run: 'exit 4'}]}
  - {id: after, name: After, depends_on: [bad], steps: [{name: s, run: echo never}]}
  - {id: other, name: Other, steps: [{name: s, run: echo independent}]}
""", ("failure", "dag"), differences=(FAILED_DEPENDENTS,), hangs=True),
    Case("failing-command-mid-script", """
version: "1"
nodes:
  - id: a
    name: A
    steps:
      - name: s
        run: |
          echo before
          false
          echo after
""", ("failure",), differences=(
        Difference("sh-e", d.chain(d.statuses({("a", ""): "Failed"}),
                                   d.output("a", ["before"]), d.exit_code(1))),)),
    Case("state-set-append-json", """
version: "1"
nodes:
  - id: a
    name: A
    steps:
      - name: write
        run: |
          echo 'n=42' >> "$STATE_OUTPUTS"
          echo 'cfg={"retries":3,"tags":["x"]}' >> "$STATE_OUTPUTS"
          echo 'eq=a=b=c' >> "$STATE_OUTPUTS"
          echo 'quoted="text"' >> "$STATE_OUTPUTS"
          echo 'list@="one"' >> "$STATE_OUTPUTS"
      - name: append again
        run: echo 'list@="two"' >> "$STATE_OUTPUTS"
      - name: read
        run: echo "n=${{ state.n }} cfg=${{ state.cfg }} list=${{ state.list }}"
""", ("state", "state-namespace")),
    Case("state-two-appends-in-one-step", """
version: "1"
nodes:
  - id: a
    name: A
    steps:
      - name: s
        run: |
          echo 'x@=1' >> "$STATE_OUTPUTS"
          echo 'x@=2' >> "$STATE_OUTPUTS"
""", ("state",), differences=(Difference("append-keeps-all", d.state({"x": [1, 2]})),)),
    Case("state-heredoc", """
version: "1"
nodes:
  - id: a
    name: A
    steps:
      - name: s
        run: |
          printf 'notes<<END\\nline one\\nline two\\nEND\\n' >> "$STATE_OUTPUTS"
""", ("state",), differences=(Difference("heredoc", d.state({"notes": "line one\nline two"})),)),
    Case("state-failed-step-discarded", """
version: "1"
nodes:
  - id: a
    name: A
    steps:
      - {name: kept, run: 'echo "kept=1" >> "$STATE_OUTPUTS"'}
      - {name: lost, run: 'echo "lost=1" >> "$STATE_OUTPUTS"; exit 2'}
""", ("state", "failure")),
    Case("matrix-values-expressions", """
version: "1"
nodes:
  - id: m
    name: M
    strategy: {type: matrix, values: [{region: us}, {region: eu}]}
    steps:
      - {name: s, run: 'echo "region ${{ matrix.region }}"'}
  - {id: after, name: After, depends_on: [m], steps: [{name: s, run: echo done}]}
""", ("matrix-values", "matrix-namespace")),
    Case("matrix-values-env", """
version: "1"
nodes:
  - id: m
    name: M
    strategy: {type: matrix, values: [{region: us, n: 2}, {region: eu, n: 3}]}
    steps:
      - {name: s, run: 'echo "region=$region n=$n"'}
""", ("matrix-values",), differences=(MATRIX_ENV,)),
    Case("matrix-from-state", """
version: "1"
state:
  schema:
    shards:
      type: array
      items: {type: object, properties: {team: {type: string}, size: {type: number}}}
nodes:
  - id: plan
    name: Plan
    steps:
      - name: s
        run: |
          echo 'shards@={"team":"core","size":2}' >> "$STATE_OUTPUTS"
          echo 'shards=[{"team":"core","size":2},{"team":"web","size":5}]' >> "$STATE_OUTPUTS"
  - id: work
    name: Work
    depends_on: [plan]
    strategy: {type: matrix, from_state: shards}
    steps:
      - {name: s, run: 'echo "team ${{ matrix.team }} size ${{ matrix.size }}"'}
""", ("from_state", "matrix-namespace")),
    Case("matrix-from-state-never-written", """
version: "1"
state:
  schema:
    files: {type: array, items: {type: string}}
nodes:
  - id: work
    name: Work
    strategy: {type: matrix, from_state: files}
    steps:
      - {name: s, run: echo never}
  - {id: after, name: After, depends_on: [work], steps: [{name: s, run: echo after}]}
""", ("from_state",)),
    Case("manual-node", """
version: "1"
nodes:
  - {id: build, name: Build, steps: [{name: s, run: echo build}]}
  - id: approve
    name: Approve
    type: manual
    depends_on: [build]
    steps: [{name: s, run: echo approved}]
  - {id: deploy, name: Deploy, depends_on: [approve], steps: [{name: s, run: echo deploy}]}
""", ("manual",), steps=RUN_THEN_TRIGGER, hangs=True, differences=(PAUSES,)),
    Case("manual-trigger", """
version: "1"
nodes:
  - {id: a, name: A, steps: [{name: s, run: echo a}]}
  - id: gate
    name: Gate
    trigger: {type: manual}
    depends_on: [a]
    steps: [{name: s, run: 'echo "gate=open" >> "$STATE_OUTPUTS"'}]
""", ("manual", "trigger"), steps=RUN_THEN_TRIGGER, differences=(PAUSES,)),
    Case("manual-matrix", """
version: "1"
nodes:
  - id: deploy
    name: Deploy
    trigger: {type: manual}
    strategy: {type: matrix, values: [{env: staging}, {env: prod}]}
    steps: [{name: s, run: 'echo "deploy ${{ matrix.env }}"'}]
""", ("manual", "trigger", "matrix-values"), steps=RUN_THEN_TRIGGER, differences=(PAUSES,)),
    Case("template-params-namespace", """
version: "1"
templates:
  - id: greet
    name: Greet
    inputs: [{name: who, type: string, required: true}]
    steps: [{name: s, run: 'echo "hello ${{ params.who }}"'}]
nodes:
  - id: a
    name: A
    steps:
      - {name: greet bob, use: {template: greet, inputs: {who: bob}}}
      - {name: greet amy, use: {template: greet, inputs: {who: amy}}}
""", ("templates", "inputs", "params-namespace")),
    Case("template-inputs-namespace", """
version: "1"
templates:
  - id: greet
    name: Greet
    inputs: [{name: who, type: string, required: true}]
    steps: [{name: s, run: 'echo "hello ${{ inputs.who }}"'}]
nodes:
  - id: a
    name: A
    steps: [{name: greet, use: {template: greet, inputs: {who: bob}}}]
""", ("templates", "inputs", "inputs-namespace"), differences=(
        Difference("inputs-namespace", d.chain(d.statuses({("a", ""): "Completed"}),
                                               d.output("a", ["hello bob"]),
                                               d.exit_code(0))),)),
    Case("template-input-default", """
version: "1"
templates:
  - id: greet
    name: Greet
    inputs:
      - {name: who, type: string, required: true}
      - {name: greeting, type: string, default: hi}
    steps: [{name: s, run: 'echo "${{ params.greeting }} ${{ params.who }}"'}]
nodes:
  - id: a
    name: A
    steps: [{name: greet, use: {template: greet, inputs: {who: bob}}}]
""", ("templates", "defaults"), differences=(
        Difference("template-defaults", d.chain(d.statuses({("a", ""): "Completed"}),
                                                d.output("a", ["hi bob"]),
                                                d.exit_code(0))),)),
    Case("template-outputs", """
version: "1"
templates:
  - id: build
    name: Build
    inputs: [{name: target, type: string, required: true}]
    steps: [{name: s, run: 'echo "built ${{ params.target }}"'}]
    outputs: [{name: artifact, value: "${{ params.target }}.tar"}]
nodes:
  - id: make
    name: Make
    steps: [{name: build, use: {template: build, inputs: {target: app}}}]
  - id: ship
    name: Ship
    depends_on: [make]
    steps: [{name: s, run: 'echo "ship ${{ tasks.make.outputs.artifact }}"'}]
""", ("templates", "outputs", "tasks-namespace"), hangs=False, differences=(
        Difference("template-outputs", d.chain(d.statuses({("ship", ""): "Completed"}),
                                               d.output("ship", ["ship app.tar"]),
                                               d.exit_code(0))),)),
    Case("params-defaults", """
version: "1"
params:
  schema:
    who: {type: string, default: world}
    count: {type: number, default: 3}
    loud: {type: boolean, default: false}
nodes:
  - id: a
    name: A
    steps:
      - {name: s, run: 'echo "hello ${{ params.who }} x${{ params.count }} ${{ params.loud }}"'}
""", ("params", "params-namespace")),
    Case("params-given", """
version: "1"
params:
  schema:
    who: {type: string, default: world}
    env: {type: string, oneOf: [{type: string, enum: [dev, prod]}], default: dev}
nodes:
  - id: a
    name: A
    steps:
      - {name: s, run: 'echo "hello ${{ params.who }} on ${{ params.env }}"'}
""", ("params",), steps=(Invocation(params={"who": "bob", "env": "prod"}),)),
    Case("params-missing-required", """
version: "1"
params:
  schema:
    token: {type: string}
nodes:
  - id: a
    name: A
    steps: [{name: s, run: 'echo "${{ params.token }}"'}]
""", ("params",), differences=(Difference("params-checked", d.refused(
        2, "ferry: error: param 'token' is required (it has no default): give --param "
           "token=VALUE")),)),
    Case("params-wrong-type", """
version: "1"
params:
  schema:
    count: {type: number, default: 1}
nodes:
  - id: a
    name: A
    steps: [{name: s, run: 'echo "count ${{ params.count }}"'}]
""", ("params",), steps=(Invocation(params={"count": "many"}),), differences=(
        Difference("params-checked", d.refused(
            2, "ferry: error: param 'count': \"many\" is not a valid number")),)),
    Case("params-not-in-enum", """
version: "1"
params:
  schema:
    env: {type: string, oneOf: [{type: string, enum: [dev, prod]}], default: dev}
nodes:
  - id: a
    name: A
    steps: [{name: s, run: 'echo "env ${{ params.env }}"'}]
""", ("params",), steps=(Invocation(params={"env": "test"}),), differences=(
        Difference("params-checked", d.refused(
            2, "ferry: error: param 'env' is \"test\", not one of: dev, prod")),)),
    Case("conditions", """
version: "1"
params:
  schema:
    env: {type: string, default: dev}
    n: {type: string, default: "3"}
    off: {type: string, default: "false"}
nodes:
  - id: a
    name: A
    steps:
      - {name: always, run: echo always}
      - {name: never, if: "false", run: echo never}
      - {name: yaml-false, if: false, run: echo yaml-false}
      - {name: prod, if: 'params.env == "prod"', run: echo prod}
      - {name: dev, if: 'params.env == "dev"', run: echo dev}
      - {name: not-prod, if: 'params.env != "prod"', run: echo not-prod}
      - {name: number, if: 'params.n > 2', run: echo number}
      - {name: off, if: 'params.off', run: echo off}
      - {name: wrapped, if: '${{ params.env == "dev" }}', run: echo wrapped}
      - {name: both, if: 'params.env == "dev" && params.n < 5', run: echo both}
      - {name: either, if: 'params.env == "x" || params.n == 3', run: echo either}
      - {name: negated, if: '!(params.env == "x")', run: echo negated}
""", ("conditions", "params-namespace"), differences=(
        Difference("condition-numbers", d.output("a", [
            "always", "dev", "not-prod", "number", "wrapped", "both", "either", "negated"])),)),
    Case("conditions-state-and-matrix", """
version: "1"
nodes:
  - id: w
    name: W
    steps:
      - {name: before, if: 'state.ready || false', run: echo too-early}
      - name: set
        run: 'echo "ready=true" >> "$STATE_OUTPUTS"; echo "level=2" >> "$STATE_OUTPUTS"'
      - {name: after, if: 'state.ready', run: echo ready}
      - {name: level, if: 'state.level >= 2', run: echo level}
  - id: m
    name: M
    depends_on: [w]
    strategy: {type: matrix, values: [{region: us}, {region: eu}]}
    steps:
      - {name: us-only, if: 'matrix.region == "us"', run: 'echo "only ${{ matrix.region }}"'}
""", ("conditions", "state-namespace", "matrix-namespace")),
    Case("condition-single-quotes", """
version: "1"
nodes:
  - id: a
    name: A
    steps:
      - {name: quoted, if: "'yes' == 'yes'", run: echo quoted}
""", ("conditions",), differences=(
        Difference("condition-single-quotes", d.output("a", ["quoted"])),)),
    Case("condition-unevaluable", """
version: "1"
nodes:
  - id: a
    name: A
    steps:
      - {name: first, run: echo first}
      - {name: guarded, if: 'params.missing == "x"', run: echo guarded}
      - {name: last, run: echo last}
""", ("conditions",), differences=(
        Difference("condition-unevaluable", d.chain(d.statuses({("a", ""): "Failed"}),
                                                    d.output("a", ["first"]),
                                                    d.exit_code(1))),)),
    Case("env-precedence", """
version: "1"
nodes:
  - id: a
    name: A
    env: {FROM_NODE: node, SHARED: node, n: node}
    strategy: {type: matrix, values: [{n: 7}]}
    steps:
      - {name: node-only, run: 'echo "$FROM_NODE $SHARED $n"'}
      - {name: step-env, env: {SHARED: step, n: step}, run: 'echo "$FROM_NODE $SHARED $n"'}
""", ("env", "matrix-values")),
    Case("env-template-and-use", """
version: "1"
templates:
  - id: t
    name: T
    env: {FROM_TEMPLATE: template}
    steps: [{name: s, env: {INNER: inner}, run: 'echo "t=$FROM_TEMPLATE u=$FROM_USE i=$INNER"'}]
nodes:
  - id: a
    name: A
    steps: [{name: use, env: {FROM_USE: use}, use: {template: t}}]
""", ("env", "templates"), differences=(
        Difference("template-env", d.output("a", ["t=template u=use i=inner"])),)),
    Case("env-expressions", """
version: "1"
params:
  schema:
    who: {type: string, default: bob}
nodes:
  - id: a
    name: A
    env: {WHO: "${{ params.who }}"}
    steps: [{name: s, run: 'echo "who=$WHO"'}]
""", ("env", "params-namespace"), differences=(
        Difference("env-expressions", d.output("a", ["who=bob"])),)),
    Case("env-namespace", """
version: "1"
nodes:
  - id: a
    name: A
    steps: [{name: s, run: 'echo "lang=${{ env.LANG }}"'}]
""", ("env-namespace",), differences=(
        Difference("env-namespace", d.chain(d.statuses({("a", ""): "Completed"}),
                                            d.output("a", ["lang=C.UTF-8"]),
                                            d.exit_code(0))),)),
    Case("engine-variables", """
version: "1"
nodes:
  - id: a
    name: A
    steps:
      - {name: write, run: 'echo "files=[\\"a.ts\\"]" >> "$STATE_OUTPUTS"'}
      - name: read
        run: |
          cat "$CODEMOD_STATE"; echo
          test "$CODEMOD_PATH" = "$PWD" && echo path-ok
          test -n "$CODEMOD_TASK_ID" && test -n "$CODEMOD_WORKFLOW_RUN_ID" && echo ids-ok
""", ("engine-variables",)),
    Case("state-schema-wrong-type", """
version: "1"
state:
  schema:
    count: {type: number}
nodes:
  - id: a
    name: A
    steps: [{name: s, run: 'echo "count=many" >> "$STATE_OUTPUTS"'}]
""", ("state-schema",), differences=(
        Difference("state-schema-enforced", d.chain(d.statuses({("a", ""): "Failed"}),
                                                    d.state({}), d.exit_code(1))),)),
    Case("state-schema-undeclared-key", """
version: "1"
state:
  schema:
    files: {type: array, items: {type: string}}
nodes:
  - id: a
    name: A
    steps:
      - {name: s, run: 'echo "files@=a.ts" >> "$STATE_OUTPUTS"; echo "other=1" >> "$STATE_OUTPUTS"'}
""", ("state-schema",), differences=(
        Difference("state-schema-enforced", d.chain(d.statuses({("a", ""): "Failed"}),
                                                    d.state({}), d.exit_code(1))),)),
    Case("state-schema-list-form", """
version: "1"
state:
  schema:
    - {name: files, type: array, items: {type: string}}
nodes:
  - id: a
    name: A
    steps: [{name: s, run: 'echo "files@=a.ts" >> "$STATE_OUTPUTS"'}]
""", ("state-schema",), differences=(
        Difference("state-list-form", d.runs([("a", "", "Completed")], {},
                                             {"files": ["a.ts"]}, 0)),)),
    Case("unknown-key-stops-the-run", """
version: "1"
nodes:
  - id: a
    name: A
    continue-on-error: true
    steps: [{name: s, run: 'exit 1'}]
""", ("unknown-keys",), differences=(
        Difference("unknown-keys", d.refused(
            2, "Error at nodes[0].continue-on-error: unknown key 'continue-on-error'; Ferry "
               "does not know what it does, so it does not run the workflow (remove it or fix "
               "its name) (line 6)")),)),
    Case("condition-on-a-template-use", """
version: "1"
templates:
  - id: t
    name: T
    steps: [{name: s, run: echo from-template}]
nodes:
  - id: a
    name: A
    steps:
      - {name: skipped use, if: "false", use: {template: t}}
      - {name: kept use, if: "true", use: {template: t}}
""", ("conditions", "templates")),
    Case("nested-state-path", """
version: "1"
nodes:
  - id: a
    name: A
    steps:
      - {name: w, run: 'echo "cfg={\\"db\\":{\\"port\\":5432}}" >> "$STATE_OUTPUTS"'}
      - {name: r, run: 'echo "port=${{ state.cfg.db.port }}"'}
""", ("state-namespace",), differences=(
        Difference("nested-state-paths", d.chain(d.statuses({("a", ""): "Completed"}),
                                                 d.output("a", ["port=5432"]),
                                                 d.exit_code(0))),)),
    Case("bare-matrix-name", """
version: "1"
nodes:
  - id: m
    name: M
    strategy: {type: matrix, values: [{region: us}]}
    steps: [{name: s, run: 'echo "region ${{ region }}"'}]
""", ("matrix-namespace",), differences=(
        Difference("bare-matrix-names", d.chain(d.statuses({("m", '{"region":"us"}'): "Completed",
                                                            ("m", "master"): "Completed"}),
                                                d.output('m {"region":"us"}', ["region us"]),
                                                d.exit_code(0))),)),
    Case("scripts-next-to-the-workflow", """
version: "1"
nodes:
  - id: setup
    name: Setup (shell)
    steps:
      - {name: Setup, run: $CODEMOD_PATH/scripts/setup.sh}
  - id: cleanup
    name: Cleanup (shell)
    depends_on: [setup]
    steps:
      - {name: Cleanup, run: $CODEMOD_PATH/scripts/cleanup.sh}
""", ("engine-variables",), files={
        "scripts/setup.sh": "#!/bin/sh\necho \"setting up in $(basename \"$CODEMOD_PATH\")\"\n",
        "scripts/cleanup.sh": "#!/bin/sh\necho 'cleaning up'\n"}),
    Case("shebang-script", """
version: "1"
nodes:
  - id: a
    name: A
    steps:
      - name: s
        run: |
          #!/bin/sh
          echo "from $0" | sed 's/from .*/from a script file/'
""", ("shebang",)),
]

