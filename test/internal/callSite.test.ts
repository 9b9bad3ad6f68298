/**
 * Call-site capture: the client method and everything above it are omitted, the caller's frames are kept down to
 * Effect's runtime, whether the runtime has a path of its own (sources, dist/) or shares one file with the caller
 * (a bundle).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as CallSite from "../../src/internal/callSite.js"

/** Stands in for a client method: captures the call site of whoever calls it. */
function clientMethod(): CallSite.CallSite {
  return CallSite.capture(clientMethod)
}

function callerOfTheClient(): CallSite.CallSite {
  return clientMethod()
}

const site = (...frames: Array<string>): CallSite.CallSite => ({ stack: ["Error", ...frames].join("\n") })

describe("callSite", () => {
  it("omits the client method and keeps its caller first", () => {
    const formatted = CallSite.format(callerOfTheClient())
    assert.isDefined(formatted)
    assert.match(formatted!, /^at callerOfTheClient \(.*callSite\.test\.ts:\d+:\d+\)/)
    assert.notInclude(formatted!, "clientMethod")
    assert.notInclude(formatted!, "src/internal/callSite")
  })

  it.effect("under yield* the caller is the Effect.gen body, and Effect's runtime below it is dropped", () =>
    Effect.gen(function*() {
      const captured = clientMethod()
      const formatted = CallSite.format(captured)!
      assert.match(formatted, /^at .*callSite\.test\.ts:\d+:\d+\)?$/)
      assert.strictEqual(formatted.split("\n").length, 1)
      assert.include(captured.stack!, "Generator.next")
      yield* Effect.void
    }))

  it("stops at Effect's runtime by path, by ~effect/ name or at Generator.next, and skips Node's frames", () => {
    const fromSources = site(
      "    at helper (/app/src/jobs.ts:10:5)",
      "    at AsyncResource.runInAsyncScope (node:async_hooks:214:14)",
      "    at <anonymous> (/app/src/main.ts:3:9)",
      "    at ContImpl.andThenCont (/app/node_modules/effect/dist/internal/effect.js:1585:10)",
      "    at <anonymous> (/app/src/other.ts:1:1)"
    )
    assert.strictEqual(
      CallSite.format(fromSources),
      "at helper (/app/src/jobs.ts:10:5)\n  at <anonymous> (/app/src/main.ts:3:9)"
    )
    const bundled = site(
      "    at <anonymous> (/app/out/main.mjs:51234:20)",
      "    at Generator.next (<anonymous>)",
      "    at IteratorImpl.~effect/Effect/successCont (/app/out/main.mjs:8012:28)"
    )
    assert.strictEqual(CallSite.format(bundled), "at <anonymous> (/app/out/main.mjs:51234:20)")
    const bundledCallback = site(
      "    at /app/out/main.cjs:51234:20",
      "    at ExitPrimitive.~effect/Effect/evaluate (/app/out/main.cjs:6587:30)",
      "    at FiberImpl.runLoop (/app/out/main.cjs:6694:41)"
    )
    assert.strictEqual(CallSite.format(bundledCallback), "at /app/out/main.cjs:51234:20")
  })

  it("keeps at most four frames, and gives no call site when no frame is the caller's", () => {
    const deep = site(...Array.from({ length: 6 }, (_, i) => `    at f${i} (/app/src/deep.ts:${i + 1}:1)`))
    assert.strictEqual(CallSite.format(deep)!.split("\n").length, 4)
    assert.isUndefined(CallSite.format(site("    at Generator.next (<anonymous>)")))
    assert.isUndefined(CallSite.format({}))
  })
})
