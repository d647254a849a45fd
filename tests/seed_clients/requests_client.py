import requests
API_KEY = 'YOUR_S3_KEY'
BASE = 'YOUR_BASE_URL'
headers = {'Authorization': f'Bearer {API_KEY}'}
# Upload
with open('photo.jpg', 'rb') as f:
    resp = requests.post(f'{BASE}/s3/upload',
        headers=headers,
        files={'file': f},
        data={'key': 'images/photo.jpg'})
print(resp.json())
# List files
resp = requests.get(f'{BASE}/s3/files', headers=headers)
for f in resp.json()['files']:
    print(f['key'], f['size'])
# Download
resp = requests.get(f'{BASE}/s3/files/images/photo.jpg',
    headers=headers, stream=True)
with open('downloaded.jpg', 'wb') as f:
    for chunk in resp.iter_content(8192):
        f.write(chunk)
