/**
 * The compatibility rules, each grounded in the real encoding: the checker's verdict on a change, next to what
 * happens when a value written with one Schema is read with the other through SchemaBinary (the wire's codec).
 * Compatible → it round-trips; incompatible → it fails to decode or is misread; a warning → it decodes, and the test
 * shows what is lost.
 */
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Schema } from "effect"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as SchemaBinary from "effect/encoding/SchemaBinary"
import { RpcCompatibility, RpcGateway } from "effect-actor-rpc"
import { decoded, issuesFor, payloadGateway, refused, verdict } from "./fixtures/compat.js"

const A = Schema.TaggedStruct("A", { x: Schema.Number })
const B = Schema.TaggedStruct("B", { y: Schema.String })
const C = Schema.TaggedStruct("C", {})

describe("RpcCompatibility: compatible changes", () => {
  it("adding an optional field: old values decode, and the new field is skipped by old readers", () => {
    const v1 = Schema.Struct({ a: Schema.String })
    const v2 = Schema.Struct({ a: Schema.String, b: Schema.optionalKey(Schema.Number) })
    assert.deepStrictEqual(verdict(v1, v2), [])
    assert.deepStrictEqual(verdict(v2, v1), [])
    assert.deepStrictEqual(decoded(v1, v2, { a: "x" }), { a: "x" })
    assert.deepStrictEqual(decoded(v2, v1, { a: "x", b: 1 }), { a: "x" })
  })

  it("adding a field with a decoding default: old values decode with the default", () => {
    const v1 = Schema.Struct({ a: Schema.String })
    const v2 = Schema.Struct({ a: Schema.String, b: Schema.String.pipe(Schema.withDecodingDefaultKey(Effect.succeed("none"))) })
    assert.deepStrictEqual(verdict(v1, v2), [])
    assert.deepStrictEqual(decoded(v1, v2, { a: "x" }), { a: "x", b: "none" })
  })

  it("reordering fields", () => {
    const v1 = Schema.Struct({ a: Schema.String, b: Schema.Number, c: Schema.Boolean })
    const v2 = Schema.Struct({ c: Schema.Boolean, a: Schema.String, b: Schema.Number })
    assert.deepStrictEqual(verdict(v1, v2), [])
    assert.deepStrictEqual(decoded(v1, v2, { a: "x", b: 1, c: true }), { a: "x", b: 1, c: true })
  })

  it("renaming a field that keeps its SchemaBinary.fieldId: the reader gets the value under its own name", () => {
    const v1 = Schema.Struct({ name: Schema.String.pipe(SchemaBinary.fieldId(1)) })
    const v2 = Schema.Struct({ fullName: Schema.String.pipe(SchemaBinary.fieldId(1)) })
    assert.deepStrictEqual(verdict(v1, v2), ["info FieldRenamed .fullName"])
    assert.deepStrictEqual(decoded(v1, v2, { name: "Ada" }), { fullName: "Ada" })
  })

  it("widening a union of tagged members on the reading side", () => {
    assert.deepStrictEqual(verdict(Schema.Union([A, B]), Schema.Union([A, B, C])), [])
    assert.deepStrictEqual(decoded(Schema.Union([A, B]), Schema.Union([A, B, C]), { _tag: "B", y: "y" }), {
      _tag: "B",
      y: "y"
    })
  })

  it("a one-member union of a tagged struct already has a selector, so it can grow", () => {
    assert.deepStrictEqual(verdict(Schema.Union([A]), Schema.Union([A, B])), [])
    assert.deepStrictEqual(decoded(Schema.Union([A]), Schema.Union([A, B]), { _tag: "A", x: 1 }), { _tag: "A", x: 1 })
  })

  it("widening literals, and a literal read as its plain type", () => {
    const v1 = Schema.Literals(["a", "b"])
    assert.deepStrictEqual(verdict(v1, Schema.Literals(["a", "b", "c"])), [])
    assert.deepStrictEqual(verdict(v1, Schema.String), [])
    assert.strictEqual(decoded(v1, Schema.Literals(["a", "b", "c"]), "b"), "b")
    assert.strictEqual(decoded(v1, Schema.String, "a"), "a")
  })

  it("an integer read as a number (a varint is a number), in a field and as the whole value", () => {
    assert.deepStrictEqual(verdict(Schema.Int, Schema.Number), [])
    assert.deepStrictEqual(verdict(Schema.Struct({ n: Schema.Int }), Schema.Struct({ n: Schema.Number })), [])
    assert.strictEqual(decoded(Schema.Int, Schema.Number, 7), 7)
    assert.deepStrictEqual(decoded(Schema.Struct({ n: Schema.Int }), Schema.Struct({ n: Schema.Number }), { n: -3 }), {
      n: -3
    })
  })

  it("a Date read as a DateTime.Utc (both are epoch milliseconds on the wire)", () => {
    assert.deepStrictEqual(verdict(Schema.Date, Schema.DateTimeUtc), [])
    const utc = decoded(Schema.Date, Schema.DateTimeUtc, new Date(1234)) as DateTime.Utc
    assert.isTrue(DateTime.isDateTime(utc))
    assert.strictEqual(utc.epochMilliseconds, 1234)
  })

  it("NonEmptyArray of structs read as an Array of structs (both are rows with a count)", () => {
    const S = Schema.Struct({ a: Schema.String })
    assert.deepStrictEqual(verdict(Schema.NonEmptyArray(S), Schema.Array(S)), [])
    assert.deepStrictEqual(decoded(Schema.NonEmptyArray(S), Schema.Array(S), [{ a: "x" }, { a: "y" }]), [
      { a: "x" },
      { a: "y" }
    ])
  })

  it("evolving a struct inside an array of structs (rows skip unknown fields too)", () => {
    const v1 = Schema.Array(Schema.Struct({ a: Schema.String, gone: Schema.optionalKey(Schema.Number) }))
    const v2 = Schema.Array(Schema.Struct({ a: Schema.String, added: Schema.optionalKey(Schema.Boolean) }))
    assert.deepStrictEqual(verdict(v1, v2), [])
    assert.deepStrictEqual(verdict(v2, v1), [])
    assert.deepStrictEqual(decoded(v1, v2, [{ a: "x", gone: 1 }, { a: "x" }]), [{ a: "x" }, { a: "x" }])
  })

  it("a recursive Schema that gains an optional field is compared through its cycle", () => {
    interface T1 {
      readonly v: number
      readonly kids: ReadonlyArray<T1>
    }
    interface T2 extends T1 {
      readonly label?: string
      readonly kids: ReadonlyArray<T2>
    }
    const T1: Schema.Codec<T1> = Schema.Struct({ v: Schema.Number, kids: Schema.Array(Schema.suspend(() => T1)) })
    const T2: Schema.Codec<T2> = Schema.Struct({
      v: Schema.Number,
      label: Schema.optionalKey(Schema.String),
      kids: Schema.Array(Schema.suspend(() => T2))
    })
    const tree = { v: 1, kids: [{ v: 2, kids: [] }, { v: 3, kids: [{ v: 4, kids: [] }] }] }
    assert.deepStrictEqual(verdict(T1, T2), [])
    assert.deepStrictEqual(verdict(T2, T1), [])
    assert.deepStrictEqual(decoded(T1, T2, tree), tree)
  })
})

describe("RpcCompatibility: incompatible changes", () => {
  it("adding a required field: an old value has none, the new reader fails", () => {
    const v1 = Schema.Struct({ a: Schema.String })
    const v2 = Schema.Struct({ a: Schema.String, priority: Schema.Number })
    assert.deepStrictEqual(verdict(v1, v2), ["error RequiredFieldAdded .priority"])
    assert.match(refused(v1, v2, { a: "x" }), /Missing key/)
  })

  it("removing a field an old reader requires", () => {
    const v1 = Schema.Struct({ a: Schema.String, b: Schema.Number })
    const v2 = Schema.Struct({ a: Schema.String })
    // The new caller writes, the old endpoint reads.
    const issues = RpcCompatibility.check(payloadGateway(v1), payloadGateway(v2)).issues
    assert.deepStrictEqual(issues.map((i) => [i.kind, i.direction, i.writer, i.reader, i.path]), [
      ["RequiredFieldRemoved", "newCallerToOldEndpoint", "new caller", "old endpoint", "G.m.payload.b"]
    ])
    assert.match(refused(v2, v1, { a: "x" }), /Missing key/)
  })

  it("making an optional field required", () => {
    const v1 = Schema.Struct({ a: Schema.optionalKey(Schema.String) })
    const v2 = Schema.Struct({ a: Schema.String })
    assert.deepStrictEqual(verdict(v1, v2), ["error FieldBecameRequired .a"])
    assert.match(refused(v1, v2, {}), /Missing key/)
  })

  it("changing a field's type", () => {
    const v1 = Schema.Struct({ a: Schema.String })
    const v2 = Schema.Struct({ a: Schema.Number })
    assert.deepStrictEqual(verdict(v1, v2), ["error TypeChanged .a"])
    assert.match(refused(v1, v2, { a: "x" }), /Missing key/)
    // A string read as a struct is parsed as field tags: misread or refused, never the value.
    assert.deepStrictEqual(verdict(Schema.String, Schema.Struct({})), ["error TypeChanged (root)"])
    assert.match(refused(Schema.String, Schema.Struct({}), "abc"), /unique field ids/)
  })

  it("narrowing a number to an integer: fractions fail", () => {
    assert.deepStrictEqual(verdict(Schema.Number, Schema.Int), ["error TypeChanged (root)"])
    assert.deepStrictEqual(verdict(Schema.Struct({ n: Schema.Number }), Schema.Struct({ n: Schema.Int })), [
      "error TypeChanged .n"
    ])
    refused(Schema.Number, Schema.Int, 1.5)
    assert.match(refused(Schema.Struct({ n: Schema.Number }), Schema.Struct({ n: Schema.Int }), { n: 1.5 }), /Missing key/)
  })

  it("dropping a union member the writer still sends", () => {
    assert.deepStrictEqual(verdict(Schema.Union([A, B, C]), Schema.Union([A, B])), ["error UnionMemberMissing <C>"])
    assert.match(refused(Schema.Union([A, B, C]), Schema.Union([A, B]), { _tag: "C" }), /Missing key/)
    const v1 = Schema.Struct({ u: Schema.Union([A, B, C]) })
    const v2 = Schema.Struct({ u: Schema.Union([A, B]) })
    assert.deepStrictEqual(verdict(v1, v2), ["error UnionMemberMissing .u<C>"])
    assert.match(refused(v1, v2, { u: { _tag: "C" } }), /Missing key/)
  })

  it("removing a literal fails even in an optional field (a literal is checked, not skipped)", () => {
    const v1 = Schema.Struct({ l: Schema.optionalKey(Schema.Literals(["a", "b"])) })
    const v2 = Schema.Struct({ l: Schema.optionalKey(Schema.Literals(["a"])) })
    assert.deepStrictEqual(verdict(v1, v2), ["error LiteralRemoved .l"])
    assert.match(refused(v1, v2, { l: "b" }), /Expected "a"/)
  })

  it("a single type that becomes a union (adding a failure to a method that had one)", () => {
    // SchemaBinary writes a union with a member selector and a lone struct without one.
    assert.deepStrictEqual(verdict(A, Schema.Union([A, B])), ["error UnionShapeChanged (root)"])
    assert.deepStrictEqual(verdict(Schema.Union([A, B]), A), ["error UnionShapeChanged (root)"])
    assert.match(refused(A, Schema.Union([A, B]), { _tag: "A", x: 1 }), /Missing key/)
    refused(Schema.Union([A, B]), A, { _tag: "A", x: 1 })
    assert.deepStrictEqual(verdict(Schema.String, Schema.NullOr(Schema.String)), ["error UnionShapeChanged (root)"])
    refused(Schema.String, Schema.NullOr(Schema.String), "hello")
  })

  it("optionalKey(Number) → optional(Number) silently loses every value, so it is an error", () => {
    // optional(X) is X | undefined: a union, written with a selector.
    const v1 = Schema.Struct({ n: Schema.optionalKey(Schema.Number) })
    const v2 = Schema.Struct({ n: Schema.optional(Schema.Number) })
    assert.deepStrictEqual(verdict(v1, v2), ["error UnionShapeChanged .n"])
    assert.deepStrictEqual(decoded(v1, v2, { n: 5 }), {})
  })

  it("changing a field's SchemaBinary.fieldId", () => {
    const v1 = Schema.Struct({ a: Schema.optionalKey(Schema.String) })
    const v2 = Schema.Struct({ a: Schema.optionalKey(Schema.String).pipe(SchemaBinary.fieldId(9)) })
    assert.deepStrictEqual(verdict(v1, v2), ["error FieldIdChanged .a"])
    assert.deepStrictEqual(decoded(v1, v2, { a: "lost" }), {})
  })

  it("changing an array's shape: a tuple grows, an array of integers becomes numbers", () => {
    const pair = Schema.Tuple([Schema.String, Schema.String])
    const triple = Schema.Tuple([Schema.String, Schema.String, Schema.String])
    assert.deepStrictEqual(verdict(pair, triple), ["error ArrayShapeChanged (root)"])
    refused(pair, triple, ["a", "b"])
    const withOptional = Schema.Tuple([Schema.String, Schema.String, Schema.optionalKey(Schema.String)])
    assert.deepStrictEqual(verdict(pair, withOptional), ["error ArrayShapeChanged (root)"])
    refused(pair, withOptional, ["a", "b"])
    assert.deepStrictEqual(verdict(Schema.Array(Schema.Int), Schema.Array(Schema.Number)), [
      "error ArrayShapeChanged (root)"
    ])
    refused(Schema.Array(Schema.Int), Schema.Array(Schema.Number), [1, 2])
  })

  it("in an array of structs, widening an array of literals to an array of strings breaks the rows", () => {
    const v1 = Schema.Array(Schema.Struct({ tags: Schema.Array(Schema.Literals(["ab", "b"])) }))
    const v2 = Schema.Array(Schema.Struct({ tags: Schema.Array(Schema.String) }))
    assert.deepStrictEqual(verdict(v1, v2), ["error RowEncodingChanged [].tags"])
    refused(v1, v2, [{ tags: ["ab", "b"] }, { tags: ["b"] }])
    // The same change outside an array of structs is a plain widening.
    const s1 = Schema.Struct({ tags: Schema.Array(Schema.Literals(["ab", "b"])) })
    const s2 = Schema.Struct({ tags: Schema.Array(Schema.String) })
    assert.deepStrictEqual(verdict(s1, s2), [])
    assert.deepStrictEqual(decoded(s1, s2, { tags: ["ab", "b"] }), { tags: ["ab", "b"] })
  })

  it("a record key the reader now declares as a field", () => {
    const v1 = Schema.Record(Schema.String, Schema.Number)
    const v2 = Schema.StructWithRest(Schema.Struct({ total: Schema.optionalKey(Schema.Number) }), [
      Schema.Record(Schema.String, Schema.Number)
    ])
    assert.deepStrictEqual(verdict(v1, v2), ["error RecordKeyConflict .total"])
    assert.match(refused(v1, v2, { total: 1 }), /distinct from declared fields/)
  })

  it("a refined Uint8Array read as a plain one is misread (raw bytes versus SchemaBinary)", () => {
    const refined = Schema.Uint8Array.check(Schema.isMaxLength(10))
    assert.deepStrictEqual(verdict(refined, Schema.Uint8Array), ["error CodecChanged (root)"])
    assert.deepStrictEqual(verdict(Schema.Uint8Array, refined), ["error CodecChanged (root)"])
    // The reader gets the frame itself, not the two bytes written.
    assert.notDeepEqual(decoded(refined, Schema.Uint8Array, new Uint8Array([1, 2])), new Uint8Array([1, 2]))
    refused(Schema.Uint8Array, refined, new Uint8Array([1, 2]))
  })
})

describe("RpcCompatibility: warnings (values decode, something is lost)", () => {
  it("a new union member inside an optional field is silently dropped by an old reader", () => {
    const v2 = Schema.Struct({ u: Schema.optionalKey(Schema.Union([A, B, C])) })
    const v1 = Schema.Struct({ u: Schema.optionalKey(Schema.Union([A, B])) })
    // The new caller writes C; SchemaBinary skips the member it does not know and leaves the field out.
    assert.deepStrictEqual(verdict(v2, v1), ["warning UnionMemberMissing .u<C>"])
    assert.deepStrictEqual(decoded(v2, v1, { u: { _tag: "C" } }), {})
    assert.deepStrictEqual(decoded(v2, v1, { u: { _tag: "A", x: 1 } }), { u: { _tag: "A", x: 1 } })
  })

  it("record entries no reader signature matches are skipped", () => {
    const v1 = Schema.Record(Schema.String, Schema.Number)
    const v2 = Schema.Struct({})
    assert.deepStrictEqual(verdict(v1, v2), ["warning RecordEntriesDropped {}"])
    assert.deepStrictEqual(decoded(v1, v2, { a: 1 }), {})
  })
})

describe("RpcCompatibility: where the checker cannot prove compatibility", () => {
  it("a refinement the reader adds", () => {
    const v2 = Schema.String.check(Schema.isMinLength(3))
    assert.deepStrictEqual(verdict(Schema.String, v2), ["warning RefinementAdded (root)"])
    assert.match(refused(Schema.String, v2, "ab"), /length of at least 3/)
    assert.strictEqual(decoded(Schema.String, v2, "abc"), "abc")
    // The writer's own refinement narrows what it sends: nothing to report.
    assert.deepStrictEqual(verdict(v2, Schema.String), [])
  })

  it("a custom filter (no representation of its own) still gets a snapshot, and is reported by its text", () => {
    const longer = Schema.String.check(Schema.makeFilter((s: string) => s.length > 2, { expected: "longer than 2" }))
    assert.deepStrictEqual(verdict(Schema.String, longer), ["warning RefinementAdded (root)"])
    assert.match(issuesFor(Schema.String, longer)[0]!.detail, /longer than 2/)
    assert.match(refused(Schema.String, longer, "ab"), /longer than 2/)
  })

  it("a filter without an expected text reads as 'a filter', in the report and in the snapshot's description", () => {
    const plain = Schema.String.check(Schema.makeFilter((s: string) => s.length > 2))
    const detail = issuesFor(Schema.String, plain)[0]!.detail
    assert.match(detail, /checks a filter, which/)
    assert.notMatch(detail, /null/)
    const named = Schema.String.check(Schema.makeFilter((s: string) => s.length > 2, { expected: "longer than 2" }))
    const described = (schema: Schema.Codec<string, string>) =>
      RpcCompatibility.snapshot(RpcGateway.make("G", { m: RpcGateway.ask({ payload: schema }) })).methods.m!.payload
        .description
    assert.strictEqual(described(plain), "string & a filter")
    assert.strictEqual(described(named), "string & a filter (longer than 2)")
  })

  it("a transformation the reader adds: the wire forms agree, the decoded meaning may not", () => {
    const v1 = Schema.Struct({ amount: Schema.String })
    const v2 = Schema.Struct({ amount: Schema.NumberFromString })
    assert.deepStrictEqual(verdict(v1, v2), ["warning TransformationChanged .amount"])
    // What the warning is about: "abc" decodes to NaN.
    assert.deepStrictEqual(decoded(v1, v2, { amount: "12" }), { amount: 12 })
    assert.isNaN((decoded(v1, v2, { amount: "abc" }) as { amount: number }).amount)
    // A transformation that keeps the type (a decoding default) is not reported.
    assert.deepStrictEqual(
      verdict(v1, Schema.Struct({ amount: Schema.String.pipe(Schema.withDecodingDefaultKey(Effect.succeed("0"))) })),
      []
    )
  })

  it("a declaration whose binary layout the checker does not know: unchanged is fine, changed is an error", () => {
    const v1 = Schema.ReadonlyMap(Schema.String, Schema.Number)
    const v2 = Schema.ReadonlyMap(Schema.String, Schema.String)
    assert.deepStrictEqual(verdict(v1, Schema.ReadonlyMap(Schema.String, Schema.Number)), [])
    assert.deepStrictEqual(verdict(v1, v2), ["error DeclarationChanged (root)"])
    // Misread, not refused: the number 1 comes out as a one-character string.
    assert.deepStrictEqual([...(decoded(v1, v2, new Map([["a", 1]])) as Map<string, string>)], [["a", "\u0002"]])
  })

  it("a change inside a recursive Schema is found at the root and inside the recursion, and the walk ends", () => {
    interface T1 {
      readonly v: number
      readonly kids: ReadonlyArray<T1>
    }
    interface T2 {
      readonly v: string
      readonly kids: ReadonlyArray<T2>
    }
    const T1: Schema.Codec<T1> = Schema.Struct({ v: Schema.Number, kids: Schema.Array(Schema.suspend(() => T1)) })
    const T2: Schema.Codec<T2> = Schema.Struct({ v: Schema.String, kids: Schema.Array(Schema.suspend(() => T2)) })
    // The nested trees are rows of an array of structs: the same change, in another position, reported once more.
    assert.deepStrictEqual(verdict(T1, T2), ["error TypeChanged .v", "error TypeChanged .kids[].v"])
    refused(T1, T2, { v: 1, kids: [] })
  })

  it("a Schema without any representation is compared by its description", () => {
    const snapshot = (description: string): RpcCompatibility.GatewaySnapshot => {
      const schema = { representation: null, description, codec: "binary" as const }
      return {
        format: "effect-actor-rpc/gateway-snapshot",
        version: 1,
        gateway: "G",
        fingerprint: description,
        methods: { m: { kind: "ask", payload: schema, success: schema, failure: schema } }
      }
    }
    const same = RpcCompatibility.check(snapshot("Opaque"), snapshot("Opaque")).issues
    assert.isTrue(same.length > 0 && same.every((i) => i.kind === "Unrepresentable" && i.severity === "info"))
    const changed = RpcCompatibility.check(snapshot("Opaque"), snapshot("Other")).issues
    assert.isTrue(changed.length > 0 && changed.every((i) => i.kind === "Unrepresentable" && i.severity === "error"))
  })
})

describe("RpcCompatibility: methods, tokens and directions", () => {
  const NotFound = Schema.TaggedStruct("NotFound", { id: Schema.String })
  const V1 = RpcGateway.make("Jobs", {
    submit: RpcGateway.ask({ payload: Schema.Struct({ id: Schema.String }), success: Schema.String }),
    cancel: RpcGateway.tell({ payload: Schema.String }),
    lookup: RpcGateway.ask({ payload: Schema.String, failure: Schema.Union([NotFound]) }),
    retired: RpcGateway.ask({})
  })
  const V2 = RpcGateway.make("Jobs", {
    submit: RpcGateway.ask({
      payload: Schema.Struct({ id: Schema.String, note: Schema.optionalKey(Schema.String) }),
      success: Schema.String,
      timeout: "5 seconds"
    }),
    cancel: RpcGateway.ask({ payload: Schema.String }),
    lookup: RpcGateway.ask({
      payload: Schema.String,
      failure: Schema.Union([NotFound, Schema.TaggedStruct("Gone", {})])
    }),
    stats: RpcGateway.ask({ success: Schema.Number })
  })

  it("lists method changes with their directions, and schema changes in each direction", () => {
    const report = RpcCompatibility.check(V1, V2)
    assert.deepStrictEqual(
      report.issues.map((i) => `${i.severity} ${i.kind} ${i.path} ${i.direction} ${i.writer}→${i.reader}`),
      [
        "error KindChanged Jobs.cancel both either side→either side",
        "error UnionMemberMissing Jobs.lookup.failure<Gone> oldCallerToNewEndpoint new endpoint→old caller",
        "error MethodRemoved Jobs.retired oldCallerToNewEndpoint old caller→new endpoint",
        "info MethodAdded Jobs.stats newCallerToOldEndpoint new caller→old endpoint",
        "info TimeoutChanged Jobs.submit both either side→either side"
      ]
    )
    assert.strictEqual(report.older.fingerprint, V1.fingerprint)
    assert.strictEqual(report.newer.fingerprint, V2.fingerprint)
  })

  it("a gateway compared with itself, or with its own snapshot, has no issues", () => {
    assert.deepStrictEqual(RpcCompatibility.check(V1, V1).issues, [])
    assert.deepStrictEqual(RpcCompatibility.check(RpcCompatibility.snapshot(V2), V2).issues, [])
  })

  it("a renamed gateway and a changed token refuse both ways", () => {
    const token = (schema: Schema.Top) =>
      Object.assign(RpcGateway.make("Leader", { ping: RpcGateway.ask({}) }), { token: schema }) as RpcGateway.Any
    const plain = RpcGateway.make("Leader", { ping: RpcGateway.ask({}) })
    const kinds = (older: RpcGateway.Any, newer: RpcGateway.Any) =>
      RpcCompatibility.check(older, newer).issues.map((i) => `${i.kind} ${i.path} ${i.direction}`)
    assert.deepStrictEqual(kinds(token(Schema.Number), token(Schema.Number)), [])
    assert.deepStrictEqual(kinds(token(Schema.Number), token(Schema.String)), ["TokenChanged Leader.token both"])
    assert.deepStrictEqual(kinds(plain, token(Schema.String)), ["TokenChanged Leader.token both"])
    assert.deepStrictEqual(kinds(plain, RpcGateway.make("Leader2", { ping: RpcGateway.ask({}) })), [
      "GatewayRenamed Leader2 both"
    ])
  })

  it("a tell compares only its payload; replies are compared in both directions", () => {
    const T1 = RpcGateway.make("T", { t: RpcGateway.tell({ payload: Schema.String }) })
    const T2 = RpcGateway.make("T", { t: RpcGateway.tell({ payload: Schema.Number }) })
    assert.deepStrictEqual(
      RpcCompatibility.check(T1, T2).issues.map((i) => `${i.kind} ${i.path} ${i.direction}`),
      ["TypeChanged T.t.payload oldCallerToNewEndpoint", "TypeChanged T.t.payload newCallerToOldEndpoint"]
    )
    const S1 = RpcGateway.make("S", { s: RpcGateway.ask({ success: Schema.Literals(["a", "b"]) }) })
    const S2 = RpcGateway.make("S", { s: RpcGateway.ask({ success: Schema.Literals(["a"]) }) })
    assert.deepStrictEqual(
      RpcCompatibility.check(S1, S2).issues.map((i) => `${i.kind} ${i.path} ${i.direction} ${i.writer}→${i.reader}`),
      ["LiteralRemoved S.s.success newCallerToOldEndpoint old endpoint→new caller"]
    )
  })
})

describe("RpcCompatibility.evaluate", () => {
  const V1 = RpcGateway.make("P", {
    a: RpcGateway.ask({ payload: Schema.Struct({ x: Schema.String }) }),
    b: RpcGateway.ask({ success: Schema.Literals(["on", "off"]) })
  })
  const additive = RpcGateway.make("P", {
    a: RpcGateway.ask({ payload: Schema.Struct({ x: Schema.String, y: Schema.optionalKey(Schema.Number) }) }),
    b: RpcGateway.ask({ success: Schema.Literals(["on", "off"]) }),
    c: RpcGateway.ask({})
  })
  // Readers of `b` accept more: fine for old callers, but a new caller reading an old endpoint is fine too; the
  // new endpoint now *writes* a literal old callers do not know.
  const widenedReply = RpcGateway.make("P", {
    a: RpcGateway.ask({ payload: Schema.Struct({ x: Schema.String }) }),
    b: RpcGateway.ask({ success: Schema.Literals(["on", "off", "unknown"]) })
  })
  // The new endpoint reads payloads that may lack `x`, and requires nothing new: only new callers break old ones.
  const relaxedPayload = RpcGateway.make("P", {
    a: RpcGateway.ask({ payload: Schema.Struct({ x: Schema.optionalKey(Schema.String) }) }),
    b: RpcGateway.ask({ success: Schema.Literals(["on", "off"]) })
  })

  it("exact refuses any fingerprint difference; backward and both accept an additive change", () => {
    const report = RpcCompatibility.check(V1, additive)
    assert.isFalse(RpcCompatibility.evaluate(report, "exact").accept)
    assert.isTrue(RpcCompatibility.evaluate(report, "backward").accept)
    assert.isTrue(RpcCompatibility.evaluate(report, "both").accept)
    assert.isTrue(RpcCompatibility.evaluate(RpcCompatibility.check(V1, V1), "exact").accept)
    assert.match(RpcCompatibility.evaluate(report, "exact").message, /the backward or both policy would accept/)
  })

  it("backward refuses a break of old callers; both also refuses a break of new callers", () => {
    const reply = RpcCompatibility.check(V1, widenedReply)
    assert.isFalse(RpcCompatibility.evaluate(reply, "backward").accept)
    const relaxed = RpcCompatibility.check(V1, relaxedPayload)
    assert.deepStrictEqual(relaxed.issues.map((i) => `${i.kind} ${i.direction}`), [
      "FieldBecameRequired newCallerToOldEndpoint"
    ])
    assert.isTrue(RpcCompatibility.evaluate(relaxed, "backward").accept)
    const both = RpcCompatibility.evaluate(relaxed, "both")
    assert.isFalse(both.accept)
    assert.deepStrictEqual(both.refusing.map((i) => i.path), ["P.a.payload.x"])
  })

  it("the message lists the refusing issues by path, with what happens and what to do", () => {
    const verdict = RpcCompatibility.evaluate(RpcCompatibility.check(V1, widenedReply), "both")
    const lines = verdict.message.split("\n")
    assert.match(lines[0]!, /^P \(older \w+, newer \w+\): incompatible under the both policy .*: 1 breaking change:$/)
    assert.match(lines[1]!, /^ {2}error P\.b\.success \[LiteralRemoved, old caller → new endpoint\]: .*"unknown"/)
    assert.match(lines[2]!, /^ {4}what to do: /)
  })

  it("warnings are listed when a policy accepts", () => {
    const V = (member: RpcGateway.AnySchema) =>
      RpcGateway.make("W", {
        w: RpcGateway.ask({ success: Schema.Struct({ u: Schema.optionalKey(member) }) })
      })
    const report = RpcCompatibility.check(V(Schema.Union([A, B])), V(Schema.Union([A, B, C])))
    const verdict = RpcCompatibility.evaluate(report, "both")
    assert.isTrue(verdict.accept)
    assert.match(verdict.message, /with 1 warning:\n {2}warning W\.w\.success\.u<C> \[UnionMemberMissing/)
  })

  it("format renders every issue", () => {
    const text = RpcCompatibility.format(RpcCompatibility.check(V1, additive))
    assert.match(text, /^P \(older \w+, newer \w+\): 0 errors, 0 warnings, 1 note:\n {2}info P\.c \[MethodAdded/)
    assert.match(RpcCompatibility.format(RpcCompatibility.check(V1, V1)), /no differences the wire can see/)
  })
})

describe("RpcCompatibility snapshots", () => {
  const Status = Schema.Literals(["idle", "busy"])
  class Busy extends Schema.TaggedError<Busy>()("Busy", { retryInMillis: Schema.Number }) {}
  const Gateway = RpcGateway.make("Worker", {
    run: RpcGateway.ask({
      payload: Schema.Struct({ job: Schema.String, at: Schema.optionalKey(Schema.Date) }),
      success: Schema.Option(Status),
      failure: Schema.Union([Busy]),
      timeout: "2 seconds"
    }),
    poke: RpcGateway.tell({ payload: Schema.NumberFromString }),
    blob: RpcGateway.ask({ payload: Schema.Uint8Array })
  })

  it.effect("round-trip through JSON, and compare equal to the gateway", () =>
    Effect.gen(function*() {
      const snapshot = RpcCompatibility.snapshot(Gateway)
      const text = RpcCompatibility.encodeSnapshot(snapshot)
      const back = yield* RpcCompatibility.decodeSnapshot(text, { source: "worker.json" })
      assert.deepStrictEqual(back, snapshot)
      assert.deepStrictEqual(RpcCompatibility.check(back, Gateway).issues, [])
      assert.strictEqual(back.fingerprint, Gateway.fingerprint)
      assert.deepStrictEqual(Object.keys(back.methods), ["blob", "poke", "run"])
      assert.strictEqual(back.methods.run!.timeoutMillis, 2000)
      assert.strictEqual(back.methods.blob!.payload.codec, "bytes")
      assert.deepStrictEqual(back.methods.poke!.payload.decoding, { "": { decodesTo: "number" } })
      assert.match(back.methods.run!.failure.description, /Busy/)
    }))

  it.effect("a malformed snapshot is a SnapshotError that says what is wrong", () =>
    Effect.gen(function*() {
      const decode = (input: string) =>
        RpcCompatibility.decodeSnapshot(input, { source: "old.json" }).pipe(Effect.flip)
      const notJson = yield* decode("{ nope")
      assert.strictEqual(notJson.reason, "InvalidJson")
      assert.match(notJson.message, /^The gateway snapshot from old\.json is not JSON: /)
      assert.isTrue(RpcCompatibility.isSnapshotError(notJson))

      const good = JSON.parse(RpcCompatibility.encodeSnapshot(RpcCompatibility.snapshot(Gateway)))
      const future = yield* decode(JSON.stringify({ ...good, version: 2 }))
      assert.strictEqual(future.reason, "UnsupportedVersion")
      assert.match(future.detail, /version 2; this library reads version 1/)

      const other = yield* decode(JSON.stringify({ ...good, format: "something-else" }))
      assert.strictEqual(other.reason, "InvalidSnapshot")

      const { fingerprint: _, ...noFingerprint } = good
      const missing = yield* decode(JSON.stringify(noFingerprint))
      assert.strictEqual(missing.reason, "InvalidSnapshot")
      assert.match(missing.detail, /fingerprint/)

      const badKind = structuredClone(good)
      badKind.methods.run.kind = "call"
      assert.match((yield* decode(JSON.stringify(badKind))).detail, /kind/)

      const badRepresentation = structuredClone(good)
      badRepresentation.methods.run.payload.representation = { representation: { _tag: "Nonsense" }, references: {} }
      const invalid = yield* decode(JSON.stringify(badRepresentation))
      assert.strictEqual(invalid.reason, "InvalidSnapshot")
      assert.match(invalid.detail, /^methods\.run\.payload\.representation is not a SchemaRepresentation document/)
    }))

  it("a gateway with a declared token Schema carries it", () => {
    const fenced = Object.assign(RpcGateway.make("F", { ping: RpcGateway.ask({}) }), { token: Schema.Number })
    const snapshot = RpcCompatibility.snapshot(fenced)
    assert.deepStrictEqual(snapshot.token?.representation, {
      representation: { _tag: "Number", checks: [] },
      references: {}
    })
    assert.isUndefined(RpcCompatibility.snapshot(RpcGateway.make("F", { ping: RpcGateway.ask({}) })).token)
  })

  it("decoding notes name transformations and their checks by path", () => {
    const positive = Schema.NumberFromString.check(Schema.isGreaterThan(0))
    const G = RpcGateway.make("N", {
      m: RpcGateway.ask({
        payload: Schema.Struct({
          list: Schema.Array(positive),
          pick: Schema.Union([Schema.TaggedStruct("X", { n: positive }), Schema.TaggedStruct("Y", {})]),
          opt: Schema.Option(positive)
        })
      })
    })
    assert.deepStrictEqual(RpcCompatibility.snapshot(G).methods.m!.payload.decoding, {
      ".list[]": { decodesTo: "number & isGreaterThan({\"exclusiveMinimum\":0})", checks: ["isGreaterThan({\"exclusiveMinimum\":0})"] },
      ".pick<X>.n": {
        decodesTo: "number & isGreaterThan({\"exclusiveMinimum\":0})",
        checks: ["isGreaterThan({\"exclusiveMinimum\":0})"]
      },
      ".opt<Some>": {
        decodesTo: "number & isGreaterThan({\"exclusiveMinimum\":0})",
        checks: ["isGreaterThan({\"exclusiveMinimum\":0})"]
      }
    })
  })

  it("a snapshot of each demo gateway reads back and matches itself", async () => {
    const protocol = await import("../examples/demo/protocol.js")
    for (const gateway of [protocol.ResourceManagerGateway, protocol.JobMasterGateway, protocol.TaskExecutorGateway]) {
      const snapshot = RpcCompatibility.snapshot(gateway)
      for (const method of Object.values(snapshot.methods)) {
        for (const schema of [method.payload, method.success, method.failure]) assert.isNotNull(schema.representation)
      }
      assert.deepStrictEqual(RpcCompatibility.check(snapshot, gateway).issues, [])
    }
  })
})

describe("RpcCompatibility: the README's CI check", () => {
  const JobMasterV1 = RpcGateway.make("JobMasterGateway", {
    requestJob: RpcGateway.ask({ payload: Schema.Struct({ jobId: Schema.String }), success: Schema.String })
  })
  const compatible = RpcGateway.make("JobMasterGateway", {
    requestJob: RpcGateway.ask({
      payload: Schema.Struct({ jobId: Schema.String, priority: Schema.optionalKey(Schema.Number) }),
      success: Schema.String
    })
  })
  const breaking = RpcGateway.make("JobMasterGateway", {
    requestJob: RpcGateway.ask({
      payload: Schema.Struct({ jobId: Schema.String, priority: Schema.Number }),
      success: Schema.String
    })
  })

  // The README's test body, with the released snapshot in a temporary directory.
  const ciCheck = (released: string, JobMasterGateway: RpcGateway.Any) =>
    Effect.gen(function*() {
      const before = yield* RpcCompatibility.decodeSnapshot(readFileSync(released, "utf8"), { source: released })
      return RpcCompatibility.evaluate(RpcCompatibility.check(before, JobMasterGateway), "both")
    })

  it.effect("passes for a compatible change and fails with the path of a breaking one", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "compat-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const released = join(dir, "JobMasterGateway.json")
      writeFileSync(released, RpcCompatibility.encodeSnapshot(RpcCompatibility.snapshot(JobMasterV1)))
      assert.isTrue((yield* ciCheck(released, compatible)).accept)
      const verdict = yield* ciCheck(released, breaking)
      assert.isFalse(verdict.accept)
      assert.match(verdict.message, /JobMasterGateway\.requestJob\.payload\.priority \[RequiredFieldAdded/)
    }))
})
