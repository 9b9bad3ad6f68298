/**
 * `npm run fuzz -- --iterations N [--seed S] [--concurrency C] [--only I,J] [--kinds K,L] [--avoid-known-bugs]`
 *
 * Attacks a live RpcService over TCP on 127.0.0.1 with hostile input while a well-behaved client keeps calling it
 * (test/fuzz/fuzzer.ts), prints the figures, and exits 1 on any violation, naming the seed that reproduces it.
 * Run through npm (Node 22, --expose-gc for the heap figures).
 */
import { Effect } from "effect"
import { parseArgs } from "node:util"
import { attackKinds, type AttackKind, knownBugs } from "./catalogue.js"
import { formatReport, runFuzz } from "./fuzzer.js"
import { randomSeed } from "./generators.js"

const usage = `usage: npm run fuzz -- [--iterations N] [--seed S] [--concurrency C] [--only I,J,...] [--kinds K,...] [--avoid-known-bugs]
  --iterations N        attacks to run (default 1000)
  --seed S              32-bit seed (default: random, printed)
  --concurrency C       attacks in flight at once (default 8)
  --only I,J            run only these attack numbers of the seed's sequence (to replay a violation)
  --kinds K,L           draw attacks from these kinds only: ${attackKinds.join(", ")}
  --avoid-known-bugs    leave out the inputs of the known, unfixed library bugs:
${Object.entries(knownBugs).map(([name, what]) => `                          ${name}: ${what}`).join("\n")}`

const fail = (message: string): never => {
  console.error(`${message}\n${usage}`)
  process.exit(2)
}

const { values } = parseArgs({
  options: {
    iterations: { type: "string", default: "1000" },
    seed: { type: "string" },
    concurrency: { type: "string", default: "8" },
    only: { type: "string" },
    kinds: { type: "string" },
    "avoid-known-bugs": { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false }
  },
  strict: true
})

if (values.help) {
  console.log(usage)
  process.exit(0)
}

const integer = (name: string, text: string, min: number, max: number): number => {
  const n = Number(text)
  return Number.isInteger(n) && n >= min && n <= max ? n : fail(`--${name} must be an integer from ${min} to ${max}, not "${text}"`)
}

const iterations = integer("iterations", values.iterations, 1, 10_000_000)
const seed = values.seed === undefined ? randomSeed() : integer("seed", values.seed, 0, 0xffffffff)
const concurrency = integer("concurrency", values.concurrency, 1, 1000)
const only = values.only?.split(",").map((i) => integer("only", i.trim(), 0, 0xffffffff))
const kinds = values.kinds?.split(",").map((k) => k.trim()).map((k) =>
  (attackKinds as ReadonlyArray<string>).includes(k) ? k as AttackKind : fail(`unknown attack kind "${k}"`)
)

const total = only?.length ?? iterations
console.log(`fuzzing with seed ${seed}: ${total} attacks, concurrency ${concurrency}${values["avoid-known-bugs"] ? ", known bugs avoided" : ""}`)
let lastPrint = Date.now()

const report = await Effect.runPromise(runFuzz({
  iterations,
  seed,
  concurrency,
  only,
  kinds,
  avoidKnownBugs: values["avoid-known-bugs"],
  onProgress: (done, all, violations) => {
    if (Date.now() - lastPrint >= 5000 || done === all) {
      lastPrint = Date.now()
      console.log(`  ${done}/${all} attacks, ${violations} violations`)
    }
  }
}))

console.log("")
console.log(formatReport(report))
if (report.violationCount > 0) {
  const replay = `npm run fuzz -- --seed ${seed}` +
    (only === undefined ? ` --iterations ${iterations}` : ` --only ${only.join(",")}`) +
    (values.concurrency === "8" ? "" : ` --concurrency ${concurrency}`) +
    (kinds === undefined ? "" : ` --kinds ${kinds.join(",")}`) +
    (values["avoid-known-bugs"] ? " --avoid-known-bugs" : "")
  const known = Object.values(report.violationsByWhat).reduce((sum, n) => sum + n.knownBug, 0)
  const note = known === report.violationCount
    ? " All of them involve an attack carrying a known library bug (--avoid-known-bugs leaves those out)."
    : ""
  console.error(`\nFAILED: ${report.violationCount} violations with seed ${seed}.${note} Reproduce with:\n  ${replay}`)
  process.exitCode = 1
} else {
  console.log(`\nOK: no violations with seed ${seed}`)
}
