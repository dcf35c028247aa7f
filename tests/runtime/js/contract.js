// The official OpenWhisk JavaScript client (npm `openwhisk`) against a running qmroct stack.
// Every call `wsk` users make, with the status codes apache/openwhisk's controller answers
// (core/controller/src/main/scala/org/apache/openwhisk/core/controller/*.scala).
// Usage: OW_APIHOST=http://127.0.0.1:PORT OW_AUTH=uuid:key OW_ZIP=path/to/action.zip node contract.js
'use strict'

const assert = require('assert')
const fs = require('fs')
const openwhisk = require('openwhisk')

const apihost = process.env.OW_APIHOST
const auth = process.env.OW_AUTH
const ow = openwhisk({ apihost, api_key: auth, ignore_certs: true })
const PKG = 'ctk'
const checked = []

async function expectStatus (what, promise, status) {
  try {
    await promise
  } catch (err) {
    assert.strictEqual(err.statusCode, status, `${what}: expected HTTP ${status}, got ${err.statusCode}: ${err.message}`)
    checked.push(`${what} -> ${status}`)
    return err
  }
  assert.fail(`${what}: expected HTTP ${status}, the call succeeded`)
}

function ok (what) { checked.push(`${what} -> 200`) }

// No field the real serialisers omit may come back as null.
function noNulls (what, value, path = '') {
  if (value === null) assert.fail(`${what}: null at ${path || '/'}`)
  if (typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) noNulls(what, v, `${path}/${k}`)
  }
}

function annotation (entity, key) {
  const a = (entity.annotations || []).find(x => x.key === key)
  return a === undefined ? undefined : a.value
}

async function raw (method, path, body) {
  const resp = await fetch(`${apihost}/api/v1/namespaces/_/${path}`, {
    method,
    headers: {
      Authorization: 'Basic ' + Buffer.from(auth).toString('base64'),
      'Content-Type': 'application/json'
    },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  return resp
}

const HELLO = 'def main(args):\n    return {"greeting": "hello " + args.get("name", "stranger"), "pk": args.get("pk")}\n'

async function main () {
  // -- namespaces -----------------------------------------------------------------------
  assert.deepStrictEqual(await ow.namespaces.list(), ['guest']); ok('namespaces.list')
  const everything = await ow.namespaces.get()
  assert.ok(Array.isArray(everything.actions) && Array.isArray(everything.rules)); ok('namespaces.get')

  // -- packages -------------------------------------------------------------------------
  const pkg = await ow.packages.create({ name: PKG, package: { parameters: [{ key: 'pk', value: 'pv' }] } })
  assert.strictEqual(pkg.namespace, 'guest'); assert.deepStrictEqual(pkg.binding, {})
  assert.strictEqual(typeof pkg.updated, 'number'); noNulls('package', pkg); ok('packages.create')
  await expectStatus('packages.create existing', ow.packages.create({ name: PKG }), 409)
  const pkg2 = await ow.packages.update({ name: PKG, package: { parameters: [{ key: 'pk', value: 'pv' }], annotations: [{ key: 'note', value: 'x' }] } })
  assert.strictEqual(pkg2.version, '0.0.2'); ok('packages.update')
  assert.ok((await ow.packages.list()).some(p => p.name === PKG && p.binding === false)); ok('packages.list')
  assert.ok((await ow.packages.list({ count: true })).packages >= 1); ok('packages.list count')

  // -- text actions of every Python kind (wsk action update hello hello.py --kind ...) ---
  for (const kind of ['python:3.11', 'python:3.12', 'python:default']) {
    const name = `${PKG}/hello-${kind.replace(/[:.]/g, '-')}`
    const created = await ow.actions.create({ name, action: HELLO, kind, annotations: { web: false } })
    assert.strictEqual(created.namespace, `guest/${PKG}`, 'a packaged action reports guest/pkg')
    assert.strictEqual(created.exec.binary, false, 'text code is not binary')
    assert.strictEqual(created.exec.kind, kind === 'python:default' ? 'python:3.11' : kind)
    assert.strictEqual(annotation(created, 'exec'), created.exec.kind)
    assert.strictEqual(annotation(created, 'provide-api-key'), false)
    assert.strictEqual(typeof created.updated, 'number')
    assert.strictEqual(created.package, undefined, 'no non-standard package field')
    noNulls('action', created); ok(`actions.create ${kind}`)
    const result = await ow.actions.invoke({ name, params: { name: 'wsk' }, blocking: true, result: true })
    assert.deepStrictEqual(result, { greeting: 'hello wsk', pk: 'pv' }); ok(`actions.invoke ${kind}`)
  }
  const HELLO_NAME = `${PKG}/hello-python-3-11`
  await expectStatus('actions.create existing', ow.actions.create({ name: HELLO_NAME, action: HELLO, kind: 'python:3.11' }), 409)
  await expectStatus('actions.create bad kind', ow.actions.create({ name: `${PKG}/bad`, action: HELLO, kind: 'cobol:1' }), 400)
  await expectStatus('actions.create no package', ow.actions.create({ name: 'nopkg/x', action: HELLO, kind: 'python:3.11' }), 404)
  const fetched = await ow.actions.get({ name: HELLO_NAME })
  assert.strictEqual(fetched.exec.code, HELLO); noNulls('action get', fetched); ok('actions.get')
  const noCode = await ow.actions.get({ name: HELLO_NAME, code: false })
  assert.strictEqual(noCode.exec.code, undefined); ok('actions.get code=false')
  const updated = await ow.actions.update({ name: HELLO_NAME, action: HELLO.replace('hello ', 'hi '), kind: 'python:3.11' })
  assert.strictEqual(updated.version, '0.0.2'); ok('actions.update')
  const hi = await ow.actions.invoke({ name: HELLO_NAME, params: { name: 'again' }, blocking: true, result: true })
  assert.strictEqual(hi.greeting, 'hi again')

  // -- a zip action (wsk action update z action.zip --kind python:3.11) -----------------
  const zipName = `${PKG}/zipped`
  const zipped = await ow.actions.create({ name: zipName, action: fs.readFileSync(process.env.OW_ZIP), kind: 'python:3.11' })
  assert.strictEqual(zipped.exec.binary, true); ok('actions.create zip')
  const full = await ow.actions.invoke({ name: zipName, params: { n: 41 }, blocking: true })
  assert.strictEqual(full.response.result.n, 42)
  assert.strictEqual(full.namespace, 'guest', 'activations carry the invoking namespace')
  assert.strictEqual(annotation(full, 'path'), `guest/${zipName}`); ok('actions.invoke zip blocking')

  // -- blocking results carry x-openwhisk-activation-id -----------------------------------
  const resp = await raw('POST', `actions/${zipName}?blocking=true&result=true`, { n: 1 })
  assert.strictEqual(resp.status, 200)
  const headerId = resp.headers.get('x-openwhisk-activation-id')
  assert.match(headerId || '', /^[0-9a-f]{32}$/); ok('blocking result header')
  const nonBlocking = await ow.actions.invoke({ name: zipName, params: { n: 2 } })
  assert.match(nonBlocking.activationId, /^[0-9a-f]{32}$/); ok('actions.invoke non-blocking 202')

  // -- failing invocations ------------------------------------------------------------------
  const boom = `${PKG}/boom`
  await ow.actions.create({ name: boom, action: 'def main(a):\n    raise ValueError("nope")\n', kind: 'python:3.11' })
  await expectStatus('actions.invoke application error', ow.actions.invoke({ name: boom, blocking: true, result: true }), 502)
  await expectStatus('actions.invoke missing', ow.actions.invoke({ name: `${PKG}/ghost`, blocking: true }), 404)

  // -- sequences ------------------------------------------------------------------------
  const seq = await ow.actions.create({ name: `${PKG}/twice`, sequence: [`/guest/${zipName}`, `/_/${zipName}`] })
  assert.deepStrictEqual(seq.exec.components, [`/guest/${zipName}`, `/guest/${zipName}`]); ok('actions.create sequence')
  const twice = await ow.actions.invoke({ name: `${PKG}/twice`, params: { n: 0 }, blocking: true, result: true })
  assert.strictEqual(twice.n, 2); ok('actions.invoke sequence')
  await expectStatus('sequence with a missing component', ow.actions.create({ name: `${PKG}/broken`, sequence: [`/guest/${PKG}/ghost`] }), 400)

  // -- action lists -----------------------------------------------------------------------
  const listed = await ow.actions.list({ limit: 2 })
  assert.strictEqual(listed.length, 2)
  assert.ok(listed.every(a => a.exec && a.exec.code === undefined && typeof a.exec.binary === 'boolean')); ok('actions.list limit')
  const all = await ow.actions.list({ limit: 0 })
  const skipped = await ow.actions.list({ limit: 0, skip: 2 })
  assert.strictEqual(skipped.length, all.length - 2); ok('actions.list skip')
  assert.strictEqual((await ow.actions.list({ count: true })).actions, all.length); ok('actions.list count')
  await expectStatus('actions.list limit 201', ow.actions.list({ limit: 201 }), 400)
  await expectStatus('actions.list skip -1', ow.actions.list({ skip: -1 }), 400)

  // -- triggers and rules -----------------------------------------------------------------
  const trig = await ow.triggers.create({ name: 'ctk-trigger', trigger: { parameters: [{ key: 'name', value: 'trigger' }] } })
  assert.strictEqual(trig.namespace, 'guest'); noNulls('trigger', trig); ok('triggers.create')
  await expectStatus('triggers.create existing', ow.triggers.create({ name: 'ctk-trigger' }), 409)
  assert.strictEqual((await ow.triggers.update({ name: 'ctk-trigger', trigger: { parameters: [{ key: 'name', value: 'trigger' }] } })).version, '0.0.2'); ok('triggers.update')
  assert.ok((await ow.triggers.list()).some(t => t.name === 'ctk-trigger')); ok('triggers.list')
  assert.ok((await ow.triggers.list({ count: true })).triggers >= 1); ok('triggers.list count')
  const noRule = await raw('POST', 'triggers/ctk-trigger', {})
  assert.strictEqual(noRule.status, 204); ok('trigger fire without rule -> 204')

  const rule = await ow.rules.create({ name: 'ctk-rule', trigger: 'ctk-trigger', action: HELLO_NAME })
  assert.strictEqual(rule.status, 'active')
  assert.deepStrictEqual(rule.trigger, { path: 'guest', name: 'ctk-trigger' })
  assert.deepStrictEqual(rule.action, { path: `guest/${PKG}`, name: 'hello-python-3-11' }); noNulls('rule', rule); ok('rules.create')
  await expectStatus('rules.create existing', ow.rules.create({ name: 'ctk-rule', trigger: 'ctk-trigger', action: HELLO_NAME }), 409)
  await expectStatus('rules.create missing action', ow.rules.create({ name: 'ctk-bad-rule', trigger: 'ctk-trigger', action: `${PKG}/ghost` }), 400)
  assert.strictEqual((await ow.rules.get({ name: 'ctk-rule' })).status, 'active'); ok('rules.get')
  assert.ok((await ow.rules.list()).some(r => r.name === 'ctk-rule')); ok('rules.list')
  assert.ok((await ow.rules.list({ count: true })).rules >= 1); ok('rules.list count')
  const trigGet = await ow.triggers.get({ name: 'ctk-trigger' })
  assert.deepStrictEqual(trigGet.rules['guest/ctk-rule'].action, { path: `guest/${PKG}`, name: 'hello-python-3-11' }); ok('triggers.get')

  await ow.rules.disable({ name: 'ctk-rule' }); ok('rules.disable')
  assert.strictEqual((await ow.rules.get({ name: 'ctk-rule' })).status, 'inactive')
  assert.strictEqual((await raw('POST', 'triggers/ctk-trigger', {})).status, 204)
  await ow.rules.enable({ name: 'ctk-rule' }); ok('rules.enable')
  const fired = await ow.triggers.invoke({ name: 'ctk-trigger', params: {} })
  assert.match(fired.activationId, /^[0-9a-f]{32}$/); ok('triggers.invoke -> 202')
  await expectStatus('triggers.invoke missing', ow.triggers.invoke({ name: 'ctk-ghost' }), 404)

  // -- activations ------------------------------------------------------------------------
  let acts = []
  for (let i = 0; i < 100 && acts.length < 2; i++) {
    acts = await ow.activations.list({ name: HELLO_NAME, limit: 5 })
    if (acts.length < 2) await new Promise(resolve => setTimeout(resolve, 100))
  }
  assert.ok(acts.length >= 2, 'the rule and the direct invokes left records')
  assert.ok(acts.every(a => a.name === 'hello-python-3-11' && typeof a.statusCode === 'number' && a.response === undefined)); ok('activations.list name=pkg/action')
  assert.deepStrictEqual(await ow.activations.list({ name: 'hello-python-3-11' }), [], 'a bare name does not find a packaged action')
  assert.strictEqual((await ow.activations.list({ name: HELLO_NAME, limit: 1, skip: 1 })).length, 1); ok('activations.list skip')
  const counted = await ow.activations.list({ name: HELLO_NAME, count: true })
  assert.ok(counted.activations >= acts.length); ok('activations.list count')
  await expectStatus('activations.list limit 201', ow.activations.list({ limit: 201 }), 400)
  await expectStatus('activations.list count with docs', ow.activations.list({ count: true, docs: true }), 400)
  await expectStatus('activations.list name a/b/c', ow.activations.list({ name: 'a/b/c' }), 400)
  const docs = await ow.activations.list({ name: zipName, docs: true, limit: 1 })
  assert.ok(docs[0].response && docs[0].response.result); ok('activations.list docs')

  const record = await ow.activations.get({ name: headerId })
  assert.strictEqual(record.activationId, headerId)
  assert.strictEqual(record.namespace, 'guest')
  assert.strictEqual(annotation(record, 'path'), `guest/${zipName}`); noNulls('activation', record); ok('activations.get')
  assert.deepStrictEqual((await ow.activations.result({ name: headerId })).result, { n: 2 }); ok('activations.result')
  assert.ok(Array.isArray((await ow.activations.logs({ name: headerId })).logs)); ok('activations.logs')
  await expectStatus('activations.get malformed id', ow.activations.get({ name: 'not-an-id' }), 400)
  await expectStatus('activations.get non-hex id', ow.activations.get({ name: 'z'.repeat(32) }), 400)
  await expectStatus('activations.get unknown id', ow.activations.get({ name: '0'.repeat(32) }), 404)

  // -- deletes -------------------------------------------------------------------------
  await expectStatus('packages.delete non-empty', ow.packages.delete({ name: PKG }), 409)
  assert.strictEqual((await ow.rules.delete({ name: 'ctk-rule' })).name, 'ctk-rule'); ok('rules.delete')
  await expectStatus('rules.get deleted', ow.rules.get({ name: 'ctk-rule' }), 404)
  await ow.triggers.delete({ name: 'ctk-trigger' }); ok('triggers.delete')
  await expectStatus('triggers.get deleted', ow.triggers.get({ name: 'ctk-trigger' }), 404)
  const inPkg = (await ow.actions.list({ limit: 0 })).filter(a => a.namespace === `guest/${PKG}`)
  for (const a of inPkg) await ow.actions.delete({ name: `${PKG}/${a.name}` })
  ok('actions.delete')
  await expectStatus('actions.get deleted', ow.actions.get({ name: HELLO_NAME }), 404)
  await expectStatus('actions.invoke deleted', ow.actions.invoke({ name: HELLO_NAME, blocking: true }), 404)
  await expectStatus('actions.delete deleted', ow.actions.delete({ name: HELLO_NAME }), 404)
  await ow.packages.delete({ name: PKG }); ok('packages.delete')
  await expectStatus('packages.get deleted', ow.packages.get({ name: PKG }), 404)

  // -- authentication ---------------------------------------------------------------------
  const stranger = openwhisk({ apihost, api_key: 'someone:wrong', ignore_certs: true })
  await expectStatus('wrong credentials', stranger.actions.list(), 401)

  console.log(JSON.stringify({ ok: true, checked }))
}

main().catch(err => {
  console.error(err && err.stack ? err.stack : err)
  console.log(JSON.stringify({ ok: false, checked, error: String(err && err.message) }))
  process.exit(1)
})
