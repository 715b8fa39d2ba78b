// A broadcast server on Node `ws` 8 with rooms, for ferry-load to measure ferry-server against.
//
// A connection on `/publish` is a publisher: each text frame it sends is a JSON event whose
// `channel` member names a room, and the frame is sent, as it is, to every connection in that
// room. Any other connection joins the room named by a `{"type":"subscribe","channel":...}`
// frame and gets that frame echoed back once it is in. Nothing else is parsed.
'use strict';

const { WebSocketServer } = require('ws');
const { bindAddress } = require('./args');

const { host, port } = bindAddress(process.argv);
const rooms = new Map();

const wss = new WebSocketServer({ host, port, perMessageDeflate: false });

wss.on('connection', (ws, request) => {
  if (request.url === '/publish') {
    ws.on('message', (data) => {
      let channel;
      try {
        channel = JSON.parse(data).channel;
      } catch {
        return;
      }
      const room = rooms.get(channel);
      if (!room) return;
      for (const member of room) member.send(data, { binary: false });
    });
    return;
  }
  const joined = new Set();
  ws.on('message', (data) => {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message.type !== 'subscribe' || typeof message.channel !== 'string') return;
    let room = rooms.get(message.channel);
    if (!room) rooms.set(message.channel, (room = new Set()));
    room.add(ws);
    joined.add(message.channel);
    ws.send(data, { binary: false });
  });
  ws.on('close', () => {
    for (const channel of joined) {
      const room = rooms.get(channel);
      room.delete(ws);
      if (room.size === 0) rooms.delete(channel);
    }
  });
});

wss.on('listening', () => console.error(`ws peer: listening on ${host}:${port}`));
