-- The seed's query, unchanged: it runs as is on our table.
SELECT url, caption FROM laion ORDER BY cosineDistance(image_embedding, {target:Array(Float32)}) LIMIT 10
