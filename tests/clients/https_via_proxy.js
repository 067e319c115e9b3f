// GET an https:// URL through the proxy in HTTPS_PROXY, as Node apps do with an agent:
// CONNECT, then TLS verified with Node's roots plus NODE_EXTRA_CA_CERTS.
// Prints the status line; exits 0 on a 200.
const http = require("http");
const tls = require("tls");

const target = new URL(process.argv[2]);
const proxy = new URL(process.env.HTTPS_PROXY);
const request = http.request({
  host: proxy.hostname,
  port: proxy.port,
  method: "CONNECT",
  path: `${target.hostname}:${target.port || 443}`,
});
request.on("connect", (response, socket) => {
  if (response.statusCode !== 200) {
    console.error(`CONNECT answered ${response.statusCode}`);
    process.exit(1);
  }
  const connection = tls.connect({ socket, servername: target.hostname }, () => {
    connection.write(
      `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\nConnection: close\r\n\r\n`
    );
  });
  let data = "";
  connection.on("data", (chunk) => (data += chunk));
  connection.on("end", () => {
    const status = data.split("\r\n")[0];
    console.log(status);
    process.exit(status.startsWith("HTTP/1.1 200") ? 0 : 1);
  });
  connection.on("error", (error) => {
    console.error(error.message);
    process.exit(1);
  });
});
request.on("error", (error) => {
  console.error(error.message);
  process.exit(1);
});
request.end();
