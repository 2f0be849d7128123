// Compiled (not run) by types.test.mjs: the declarations accept the documented usage and
// refuse misuse (the @ts-expect-error lines must be errors).
import { NexiosClient, NexiosError, PROTOCOL, type Message, type Recovery } from "../nexios.js";

const client = new NexiosClient("wss://example.com/connect", {
  getToken: async () => "token",
  timeout: 5000,
  onState: (state, detail) => console.log(state, detail?.code),
});
const room = client.subscribe<{ text: string }>("room", {
  since: 41,
  epoch: "k3v9c2",
  presence: true,
  onMessage: (m: Message<{ text: string }>) => console.log(m.seq, m.data.text),
  onPresence: (members, change) => console.log(members.size, change.type),
  onRecovered: (r: Recovery) => (r.complete ? undefined : location.reload()),
});

async function main(): Promise<void> {
  await room.ready();
  const { seq } = await room.publish({ text: "hi" }, { key: "k1" });
  const page = await room.history({ since: seq, limit: 50 });
  const texts: string[] = page.messages.map((m) => m.data.text);
  const members = await room.presence();
  console.log(texts, members[0]?.id, PROTOCOL, client.state === "connected");
  await client.ping();
  room.unsubscribe();
  client.close();
  try {
    await room.publish(1);
  } catch (error) {
    if (error instanceof NexiosError && error.temporary) console.log(error.code);
  }
  // @ts-expect-error the group name is a string
  client.subscribe(42);
  // @ts-expect-error unknown option
  new NexiosClient("wss://x", { retry: 3 });
  // @ts-expect-error state is read-only
  client.state = "connected";
}
main();
