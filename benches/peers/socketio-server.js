// A Socket.IO 4.8 server with rooms, for ferry-load to measure ferry-server against.
//
// A socket emits `subscribe` with a channel name to join that room and hears `subscribed` back;
// a socket that emits `publish` with an event object has it emitted as `event` to the room
// named by the event's `channel` member. WebSocket transport only (no long-polling upgrade).
'use strict';

const http = require('http');
const { Server } = require('socket.io');
const { bindAddress } = require('./args');

const { host, port } = bindAddress(process.argv);
const httpServer = http.createServer();
const io = new Server(httpServer, { transports: ['websocket'], serveClient: false });

io.on('connection', (socket) => {
  socket.on('subscribe', (channel) => {
    if (typeof channel !== 'string') return;
    socket.join(channel);
    socket.emit('subscribed', channel);
  });
  socket.on('publish', (event) => {
    if (event && typeof event.channel === 'string') io.to(event.channel).emit('event', event);
  });
});

httpServer.listen(port, host, () => console.error(`socket.io peer: listening on ${host}:${port}`));
