// A real OpenID Connect provider (npm oidc-provider) for tests/test_oidc.py, on 127.0.0.1.
// argv: port, path of a JSON file {jwks: {keys: [private JWK]}, clients: {id: [roles]}},
// path of oidc-provider's lib/index.js (installed in .npm-tools, not beside this file).
// Clients get JWT access tokens for the resource "urn:webpacs" with the client_credentials
// grant; the token's "roles" claim holds the client's roles.
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';

const { default: Provider } = await import(pathToFileURL(process.argv[4]).href);

const port = Number(process.argv[2]);
const conf = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
const roles = conf.clients;
const provider = new Provider(`http://127.0.0.1:${port}`, {
  jwks: conf.jwks,
  clients: Object.keys(roles).map((id) => ({
    client_id: id,
    client_secret: `${id}-secret`,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
  })),
  features: {
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:webpacs',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'dicom',
        audience: 'urn:webpacs',
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: async (ctx, token) => ({ roles: roles[token.clientId] || [] }),
});
provider.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
