// Azure Communication Services. The app reaches it with Entra ID (ACS_ENDPOINT + its managed
// identity), never with the access key. Phone numbers cannot be bought from a template: see the
// README's "Deploy to Azure" and docs/deploy.md.
param name string
param tags object

@description('Where ACS stores data at rest (cannot change later).')
param dataLocation string

@description('true: the access keys stop working (Entra ID only).')
param disableLocalAuth bool

resource communicationService 'Microsoft.Communication/communicationServices@2025-09-01' = {
  name: name
  // ACS is a global resource; dataLocation decides where data rests.
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
    disableLocalAuth: disableLocalAuth
  }
}

output name string = communicationService.name
output id string = communicationService.id
output endpoint string = 'https://${communicationService.properties.hostName}'
