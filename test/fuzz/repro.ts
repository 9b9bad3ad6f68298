/**
 * `npx tsx test/fuzz/repro.ts <bug>`: runs the minimal reproduction of one library bug the fuzzer found
 * (test/fuzz/knownBugs.ts) with no safety net: an uncaught exception kills this process, as it would a server.
 * Prints "behaves" and exits 0 when the library behaves, prints what went wrong and exits 1 otherwise.
 */
import { Effect } from "effect"
import { type KnownBug, knownBugs } from "./catalogue.js"
import { reproductions } from "./knownBugs.js"

const bug = process.argv[2]
if (bug === undefined || !(bug in reproductions)) {
  console.error(`usage: npx tsx test/fuzz/repro.ts <bug>\n${Object.entries(knownBugs).map(([name, what]) => `  ${name}: ${what}`).join("\n")}`)
  process.exit(2)
}

const problem = await Effect.runPromise(reproductions[bug as KnownBug])
if (problem === undefined) {
  console.log(`${bug}: behaves`)
} else {
  console.log(`${bug}: ${problem}`)
  process.exitCode = 1
}
