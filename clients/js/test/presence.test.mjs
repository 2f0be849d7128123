// Presence: a snapshot, then join/leave diffs; a reconnect brings a new snapshot.
import assert from "node:assert/strict";
import { test } from "node:test";
import { NexiosClient } from "../nexios.js";
import { settle, useFakes } from "./fake.mjs";

const env = useFakes();

const member = (id, name = id) => ({ id, info: { name } });
const join = (id, name) => ({ type: "join", group: "room", member: member(id, name) });
const leave = (id) => ({ type: "leave", group: "room", member: member(id), reason: "left" });

function setup() {
  const c = new NexiosClient("ws://t", { transport: env.server.transport });
  const changes = [];
  const sub = c.subscribe("room", {
    presence: true,
    onPresence: (members, change) => changes.push([change.type, [...members.keys()].sort().join(",")]),
  });
  return { c, sub, changes };
}

test("snapshot, then joins and leaves", async () => {
  const { sub, changes } = setup();
  await settle();
  env.server.last.open();
  const connect = env.server.last.take("connect");
  assert.deepEqual(connect.groups, { room: { presence: true } });
  const snapshot = [member("c1", "me"), member("c2", "ada")];
  env.server.last.reply(connect, { client: "c1", groups: { room: { epoch: "e", seq: 0, complete: true, presence: snapshot } } });
  await settle();
  assert.deepEqual(sub.members.get("c2"), { name: "ada" });
  env.server.last.push(join("c3", "bo"));
  env.server.last.push(join("c3", "bo (renamed)")); // a join for a known id replaces it
  env.server.last.push(leave("c2"));
  env.server.last.push(leave("zz")); // unknown: nothing changes
  assert.deepEqual(changes, [
    ["sync", "c1,c2"],
    ["join", "c1,c2,c3"],
    ["join", "c1,c2,c3"],
    ["leave", "c1,c3"],
    ["leave", "c1,c3"],
  ]);
  assert.deepEqual(sub.members.get("c3"), { name: "bo (renamed)" });
});

test("diffs that arrive before the snapshot are applied after it, in order", async () => {
  const { sub } = setup();
  await settle();
  env.server.last.open();
  const connect = env.server.last.take("connect");
  env.server.last.push(join("c9", "early"));
  env.server.last.push(leave("c2"));
  env.server.last.reply(connect, {
    client: "c1",
    groups: { room: { epoch: "e", seq: 0, complete: true, presence: [member("c1"), member("c2")] } },
  });
  await settle();
  assert.deepEqual([...sub.members.keys()].sort(), ["c1", "c9"]);
});

test("after a reconnect the new snapshot replaces the old list", async () => {
  const { c, sub } = setup();
  await settle();
  await env.server.accept({
    groups: { room: { epoch: "e", seq: 0, complete: true, presence: [member("c1"), member("c2")] } },
  });
  env.server.last.drop(1006);
  await env.clock.tick(c.options.maxDelay);
  env.server.last.open();
  const connect = env.server.last.take("connect");
  assert.deepEqual(connect.groups.room, { since: 0, epoch: "e", presence: true });
  // c2 left while we were away; c4 came.
  env.server.last.reply(connect, {
    client: "c5",
    groups: { room: { epoch: "e", seq: 0, complete: true, presence: [member("c4"), member("c5")] } },
  });
  await settle();
  assert.deepEqual([...sub.members.keys()].sort(), ["c4", "c5"]);
  assert.equal(c.client, "c5");
});

test("presence() asks the server", async () => {
  const { sub } = setup();
  await settle();
  await env.server.accept();
  const asked = sub.presence();
  await settle();
  const command = env.server.last.take("presence");
  assert.equal(command.group, "room");
  env.server.last.reply(command, { members: [member("c1")] });
  assert.deepEqual(await asked, [member("c1")]);
});
