const fs = require('fs');
const FormData = require('form-data');
const axios = require('axios');
const API_KEY = 'YOUR_S3_KEY';
const BASE = 'YOUR_BASE_URL';
// Upload
const form = new FormData();
form.append('file', fs.createReadStream('photo.jpg'));
form.append('key', 'images/photo.jpg');
await axios.post(`${BASE}/s3/upload`, form, {
headers: { ...form.getHeaders(), Authorization: `Bearer ${API_KEY}` }
});
// List files
const { data } = await axios.get(`${BASE}/s3/files`, {
headers: { Authorization: `Bearer ${API_KEY}` }
});
console.log(data.files);
// Download
const resp = await axios.get(`${BASE}/s3/files/images/photo.jpg`, {
headers: { Authorization: `Bearer ${API_KEY}` },
responseType: 'stream'
});
resp.data.pipe(fs.createWriteStream('downloaded.jpg'));
